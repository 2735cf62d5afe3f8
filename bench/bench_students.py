"""Students vs the weak-supervision teacher on the same inputs: valid-output share, items/s, tokens/s.

Genericizer: teacher = `WeakSupervisionTeacher.genericize` (rules + the base LM typing entities + the
encoder); student = the trained genericizer artifact, prompted and parsed as `query_templates` does. Valid =
a template that passes `validate_template`. Instantiator (`--pairs` > 0): teacher = `instantiate` (encoder
picks the answer window) vs the trained instantiator artifact prompted as `instantiated_pairs` does; valid =
an instruction plus an answer whose excerpts expand against the document (the asset's status "ok" before the
grounding threshold). Tokens/s counts the tokens each side's LM decoded (the teacher's LM decodes only
short entity types, so its tokens/s is not comparable; items/s is).

Needs a warehouse where the demo ran (FI_HOME or .fi): queries, matches, documents, the two artifacts.
Teacher and student alternate in rounds; medians are printed.

    .venv/bin/python bench/bench_students.py [--queries 32] [--pairs 12] [--rounds 3]
"""

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from fi_resources.lm import CausalLM  # noqa: E402
from fi_resources.logic.excerpts import ExcerptError, expand_excerpts  # noqa: E402
from fi_resources.logic.parsing import (  # noqa: E402
    OutputError,
    parse_genericizer_output,
    parse_instantiator_output,
)
from fi_resources.logic.prompts import genericizer_prompt, instantiator_prompt  # noqa: E402
from fi_resources.logic.templates import validate_template  # noqa: E402
from fi_resources.resources import ModelsResource, WarehouseResource  # noqa: E402
from fi_resources.settings import TeacherSettings  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402


def table(home: Path, name: str) -> pd.DataFrame:
    files = sorted(glob.glob(str(home / "tables" / name / "*.parquet")))
    if not files:
        sys.exit(f"table {name} not found under {home}: run the demo first (or set FI_HOME)")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def artifact(home: Path, name: str) -> Path:
    found = sorted((home / "artifacts" / name).glob("*/config.json"), key=os.path.getmtime)
    if not found:
        sys.exit(f"no {name} artifact under {home}: run the demo first (or set FI_HOME)")
    return found[-1].parent


def student_genericize(lm: CausalLM, queries: list[str], batch_size: int) -> int:
    raw = lm.generate(
        [genericizer_prompt(q) for q in queries], max_new_tokens=96, batch_size=batch_size, stop="\n"
    )
    valid = 0
    for q, text in zip(queries, raw, strict=True):
        try:
            template, _ = parse_genericizer_output(text)
        except OutputError:
            continue
        valid += validate_template(template, q)[0] is not None
    return valid


def student_instantiate(lm: CausalLM, pairs: list[tuple[str, str, str]], batch_size: int) -> int:
    raw = lm.generate(
        [instantiator_prompt(t, d) for t, _, d in pairs], max_new_tokens=80, batch_size=batch_size
    )
    valid = 0
    for (_, _, doc), text in zip(pairs, raw, strict=True):
        try:
            parsed = parse_instantiator_output(text)
            if parsed is not None:
                expand_excerpts(parsed[1], doc)
                valid += 1
        except (OutputError, ExcerptError):
            pass
    return valid


def new_tokens(lm) -> int:
    """Tokens decoded so far by a CausalLM or by a backend (the teacher's)."""
    return lm.stats.new_tokens if hasattr(lm.stats, "new_tokens") else lm.stats.tokens


def timed(lm, fn) -> tuple[int, float, int]:
    before = new_tokens(lm)
    start = time.perf_counter()
    valid = fn()
    return valid, time.perf_counter() - start, new_tokens(lm) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=str(default_home()))
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=12, help="instantiator pairs (0 = skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    # Defaults are the batch size the pipeline's local backends use.
    parser.add_argument("--genericizer-batch", type=int, default=32)
    parser.add_argument("--instantiator-batch", type=int, default=32)
    args = parser.parse_args()
    home = Path(args.home)
    queries = table(home, "user_queries").sample(frac=1.0, random_state=args.seed)["query"].tolist()
    queries = queries[: args.queries]
    # No response cache: every round must really call the teacher's model.
    models = ModelsResource(
        profile="embedded", warehouse=WarehouseResource(home=str(home)), response_cache=False
    )
    teacher = models.parts().teacher("instantiate", TeacherSettings())
    genericizer = CausalLM(artifact(home, "genericizer"))
    work = [
        (
            "genericizer",
            "teacher",
            teacher.lm,
            lambda: sum(t.reason is None for t in teacher.genericize(queries)),
        ),
        (
            "genericizer",
            "student",
            genericizer,
            lambda: student_genericize(genericizer, queries, args.genericizer_batch),
        ),
    ]
    sizes = {"genericizer": len(queries)}
    if args.pairs > 0:
        matches = table(home, "document_matches").sample(frac=1.0, random_state=args.seed).head(args.pairs)
        docs = table(home, "documents").set_index("doc_id")
        pairs = [
            (m.template, docs.at[m.doc_id, "title"], docs.at[m.doc_id, "text"]) for m in matches.itertuples()
        ]
        instantiator = CausalLM(artifact(home, "instantiator"))
        work += [
            (
                "instantiator",
                "teacher",
                teacher.lm,
                lambda: sum(teacher.instantiate(t, ti, d).reason == "ok" for t, ti, d in pairs),
            ),
            (
                "instantiator",
                "student",
                instantiator,
                lambda: student_instantiate(instantiator, pairs, args.instantiator_batch),
            ),
        ]
        sizes["instantiator"] = len(pairs)
    genericizer.generate(["warm-up"], max_new_tokens=2)
    results: dict[tuple[str, str], list[tuple[int, float, int]]] = {(w[0], w[1]): [] for w in work}
    for rnd in range(args.rounds):
        # Alternate which side goes first; the teacher's memoised embeddings are cleared so each round
        # does the full work.
        for stage, side, lm, fn in work if rnd % 2 == 0 else list(reversed(work)):
            teacher._emb.clear()
            results[(stage, side)].append(timed(lm, fn))
    print(f"warehouse: {home}  rounds: {args.rounds} (medians)")
    for stage, n in sizes.items():
        rates = {}
        for side in ("teacher", "student"):
            runs = results[(stage, side)]
            valid = statistics.median(r[0] for r in runs)
            secs = statistics.median(r[1] for r in runs)
            toks = statistics.median(r[2] for r in runs)
            rates[side] = n / secs
            print(
                f"{stage:12s} {side:7s}: valid {valid:.0f}/{n} ({valid / n:.0%})  {secs:6.1f}s  "
                f"{n / secs:6.2f} items/s  {toks / secs:6.1f} LM tok/s ({toks:.0f} tokens)"
            )
        print(f"{stage:12s} student / teacher items/s: {rates['student'] / rates['teacher']:.2f}x")


if __name__ == "__main__":
    main()
