"""`python -m fi_assets.explain PAIR_ID`: the full story of one pair, read-only from the warehouse.

    python -m fi_assets.explain 3f2a            # a unique prefix of a pair id is enough
    python -m fi_assets.explain --list 20       # judged pairs, kept ones first
    python -m fi_assets.explain --random --json # a random kept pair, as JSON

Exit status: 0 the story was printed; 2 no warehouse, or no pair with that id (or an ambiguous prefix);
3 the story was printed but an excerpt span does not match the document text.
"""

from __future__ import annotations

import argparse
import sys

from fi_resources.lineage import NoWarehouse, WarehouseReader
from fi_resources.logic.lineage import UnknownPair, render_text, story_json

EXIT_UNKNOWN = 2
EXIT_MISMATCH = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fi_assets.explain", description=__doc__.splitlines()[0])
    parser.add_argument("pair_id", nargs="?", help="a pair id, or a unique prefix of one")
    parser.add_argument("--home", help="the data home (default: $FI_HOME, else .fi)")
    parser.add_argument("--json", action="store_true", help="print the story as JSON")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument(
        "--random", action="store_true", help="explain a random kept pair (any, if none is kept)"
    )
    pick.add_argument("--list", type=int, metavar="N", help="list N judged pair ids, kept first, and exit")
    parser.add_argument("--seed", type=int, help="seed of --random")
    args = parser.parse_args(argv)
    if not (args.pair_id or args.random or args.list):
        parser.error("give a PAIR_ID, --random or --list N")
    try:
        reader = WarehouseReader(args.home)
        if args.list:
            return _list(reader, args.list)
        story = reader.story(reader.random_pair(args.seed) if args.random else args.pair_id)
    except (NoWarehouse, UnknownPair) as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    print(story_json(story) if args.json else render_text(story), end="" if not args.json else "\n")
    return EXIT_MISMATCH if story.mismatches else 0


def _list(reader: WarehouseReader, n: int) -> int:
    rows = reader.kept_pairs()
    if not rows:  # no judge yet: the instantiated pairs' ids
        rows = [{"pair_id": p} for p in reader.pair_ids()]
    for r in rows[:n]:
        kept = "kept" if r.get("kept") else "    "
        score = r.get("judge_score")
        print(
            f"{r['pair_id']}\t{'-' if score is None else score}\t{kept}\t{(r.get('instruction') or '')[:70]}"
        )
    return 0 if rows else EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
