"""Write a run's pairs out for hand labelling: one JSONL row per valid pair (or per kept pair, `--kept`) of
the shards named, with the run it came from, the document's title, the judge's score and keep decision,
the fixed split (held-out when crc32(doc_id) is odd) and `sensible` / `note` left empty for the labeller
(rubric: audit/RUBRIC.md). Rows are shuffled with a seed, so a labeller reads them blind to order.

    .venv/bin/python audit/export_pairs.py --home .fi --shards 'wikipedia-*' --corpus "..." --out FILE
"""

from __future__ import annotations

import argparse
import json
import subprocess
import zlib
from pathlib import Path

import duckdb


def split_of(doc_id: str) -> str:
    return "heldout" if zlib.crc32(doc_id.encode()) % 2 else "tune"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".fi"))
    parser.add_argument("--shards", default="*", help="glob of the judged_pairs partitions to read")
    parser.add_argument("--corpus", required=True, help="what the documents are and how they were drawn")
    parser.add_argument("--kept", action="store_true", help="kept pairs only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tables = args.home / "tables"
    pairs = duckdb.sql(
        f"""select p.*, d.title, d.source_doc_id from
        read_parquet('{tables}/judged_pairs/{args.shards}.parquet', union_by_name=true, filename=true) p
        join read_parquet('{tables}/documents/*.parquet', union_by_name=true) d using (doc_id)
        where p.status = 'ok' {"and p.kept" if args.kept else ""}"""
    ).df()
    pairs = pairs.sample(frac=1.0, random_state=args.seed)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    shards = sorted({Path(f).stem for f in pairs["filename"]})
    run = {
        "commit": commit,
        "profile": "embedded",
        "corpus": args.corpus,
        "judged_pairs_shards": shards,
    }
    with open(args.out, "w", encoding="utf8") as f:
        for p in pairs.itertuples():
            row = {
                "pair_id": p.pair_id, "run": run, "doc_id": p.doc_id, "source_doc_id": p.source_doc_id,
                "title": p.title, "template": p.template, "instruction": p.instruction, "answer": p.answer,
                "judge_score": int(p.judge_score), "kept": bool(p.kept), "sensible": None, "note": "",
                "split": split_of(p.doc_id),
            }  # fmt: skip
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(pairs)} pairs ({int(pairs['kept'].sum())} kept) from {len(shards)} shards")


if __name__ == "__main__":
    main()
