"""Corpus scale (issue 11): one shard of N documents through documents → descriptions → matches, each run in
a fresh child process with its peak memory sampled, the chunked matcher against matching the whole shard at
once (what `match_documents` did before, measured in the same run as the baseline).

    PYTHONPATH=. .venv/bin/python bench/bench_corpus_shard.py                # 100,000 documents
    PYTHONPATH=. .venv/bin/python bench/bench_corpus_shard.py --docs 5000    # quick

What runs: the project's own stage functions (`shard_documents`, `describe_documents`, `match_documents`),
a synthetic JSONL shard of distinct ~1 KB documents, a synthetic bank of `--templates` question templates in
a FAISS index, and the tiny profile's encoder (random weights, MiniLM's tokenizer) with Gaussian pooling
(K = 5). The models are stand-ins on purpose: this measures what the pipeline holds and how fast its own
code goes at 100k rows, not a model. The describer answers each document with a fixed sentence at once;
with `--lm-docs N` the tiny LM teacher also describes the first N documents, for its rate. The value typer
is off (`title_type_top_k: null`): with a real LM it is a model call per title, which is the describer's
cost again. Progress lines (count, rate, ETA) are printed as the stages log them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bank_memory import GIB, PeakMemory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOUNS = [
    "river",
    "city",
    "battle",
    "disease",
    "language",
    "composer",
    "company",
    "mineral",
    "festival",
    "law",
]
FIELDS = ["history", "geography", "medicine", "music", "law", "biology", "trade", "physics", "art", "sport"]


def write_shard(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf8") as f:
        for i in range(n):
            noun, field = NOUNS[i % len(NOUNS)], FIELDS[(i // 10) % len(FIELDS)]
            title = f"The {noun} of {field} number {i}"
            sentences = [
                f"{title} is a {noun} known in {field} since the year {1500 + i % 500}.",
                f"It was first described by the society of {field} in a report numbered {i}.",
                f"Scholars of {field} compare it with the {NOUNS[(i + 3) % len(NOUNS)]} studied in the north.",
                f"Its record {i} lists {i % 97} items, {i % 13} maps and a letter about the {noun}.",
            ]
            text = " ".join(sentences * 3)
            f.write(json.dumps({"title": title, "text": text}) + "\n")


def synthetic_bank(n: int):
    from fi_resources.logic.released import released_bank_frame, resolve_columns

    rows = []
    for i in range(n):
        noun, field = NOUNS[i % len(NOUNS)], FIELDS[(i // 10) % len(FIELDS)]
        rows.append(
            {
                "template": f"What is <fi>a {noun}</fi> known for in {field}, according to record {i}?",
                "compatible_document_description": f"A document about a {noun} in {field}, record {i}.",
            }
        )
    return released_bank_frame(rows, resolve_columns(list(rows[0]), "synthetic bank"), "synthetic")


class InstantDescriber:
    """The describe job's interface with no model: the stage's own cost only."""

    name = "instant"

    def describe_documents(self, titles, texts, progress=None) -> list[str]:
        out = [f"This text describes {t}." for t in titles]
        if progress:
            progress(len(out), len(out), 0.0)
        return out


def printer(what: str):
    """The stages' progress lines, on stderr (stdout carries the child's JSON)."""
    from fi_resources.stages import progress_reporter

    return progress_reporter(lambda line: print(f"  {line}", file=sys.stderr, flush=True), what, every_s=5)


def child(args: argparse.Namespace) -> None:
    """documents → descriptions → matches in this process; one JSON line of seconds and peaks per stage."""
    from fi_resources.index import TemplateIndex
    from fi_resources.models import ModelStore
    from fi_resources.profiles import TINY_RANDOM_ENCODER, TINY_RANDOM_LM
    from fi_resources.settings import DocumentSettings, MatchingSettings
    from fi_resources.stages import retrieval
    from fi_resources.stages.documents import describe_documents, shard_documents

    work = Path(args.work)
    store = ModelStore(TINY_RANDOM_LM, TINY_RANDOM_ENCODER, work / "models")
    encoder = store.encoder().with_gaussian_pooling(num_local=5)
    index = TemplateIndex(work / "index")
    bank = synthetic_bank(args.templates)
    if args.mode == "whole":
        retrieval.MATCH_CHUNK = 10**12  # the earlier matcher: every document embedded and searched at once
    out: dict = {"mode": args.mode, "baseline_anon": PeakMemory.status("RssAnon")}

    def stage(name: str, fn):
        with PeakMemory() as mem:
            t = time.perf_counter()
            result = fn()
            out[name] = {
                "seconds": time.perf_counter() - t,
                "peak_anon": mem.peak_anon,
                "rows": len(result.value),
            }
        return result.value

    docs = stage("documents", lambda: shard_documents(work / "shard.jsonl", "bench", DocumentSettings()))
    stage("descriptions", lambda: describe_documents(docs, InstantDescriber(), printer("describing")))
    settings = MatchingSettings(title_type_top_k=None)
    threshold = (float(args.threshold), "bench")

    def match():
        return retrieval.match_documents(
            docs, bank, encoder, index, threshold, "bench", settings, progress=printer("matching")
        )

    stage("matches", match)
    out["documents_rows"] = len(docs)
    print(json.dumps(out))


def prepare(work: Path, args: argparse.Namespace) -> dict:
    """The shard, the index and (optionally) the tiny LM's describe rate, measured once for both modes."""
    from fi_resources.models import ModelStore
    from fi_resources.profiles import TINY_RANDOM_ENCODER, TINY_RANDOM_LM
    from fi_resources.settings import DocumentSettings
    from fi_resources.stages.documents import describe_documents, shard_documents
    from fi_resources.stages.retrieval import build_template_index

    t = time.perf_counter()
    write_shard(work / "shard.jsonl", args.docs)
    facts: dict = {
        "shard_mb": (work / "shard.jsonl").stat().st_size / 1e6,
        "write_s": time.perf_counter() - t,
    }
    store = ModelStore(TINY_RANDOM_LM, TINY_RANDOM_ENCODER, work / "models")
    encoder = store.encoder().with_gaussian_pooling(num_local=5)
    build_template_index(synthetic_bank(args.templates), encoder, work / "index")
    if args.lm_docs:
        from fi_resources.teacher import WeakSupervisionTeacher

        few = shard_documents(work / "shard.jsonl", "bench", DocumentSettings()).value.head(args.lm_docs)
        teacher = WeakSupervisionTeacher(store.lm(), encoder)
        t = time.perf_counter()
        describe_documents(few, teacher, printer("describing with the tiny LM"))
        facts["lm_describe_per_s"] = len(few) / (time.perf_counter() - t)
    return facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--templates", type=int, default=2_000)
    ap.add_argument(
        "--threshold", type=float, default=0.0, help="match cosine (random encoder: 0 keeps hits)"
    )
    ap.add_argument(
        "--lm-docs", type=int, default=0, help="also describe this many with the tiny LM, for its rate"
    )
    ap.add_argument("--child", choices=["chunked", "whole"], help=argparse.SUPPRESS, dest="mode")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        facts = prepare(work, args)
        print(
            f"{args.docs:,} documents, {facts['shard_mb']:.0f} MB JSONL; bank of {args.templates:,} templates"
        )
        results = {}
        for mode in ("chunked", "whole"):
            cmd = [sys.executable, __file__, "--child", mode, "--work", tmp, "--docs", str(args.docs),
                   "--templates", str(args.templates), "--threshold", str(args.threshold)]  # fmt: skip
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT)
            if proc.returncode:
                sys.exit(f"{mode} child failed (exit {proc.returncode})")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| matcher | stage | rows | seconds | rows/s | peak RssAnon (GiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, r in results.items():
        for name in ("documents", "descriptions", "matches"):
            s = r[name]
            rate = s["rows"] / s["seconds"] if s["seconds"] else 0.0
            if name == "matches":
                rate = r["documents_rows"] / s["seconds"]
            print(
                f"| {mode} | {name} | {s['rows']:,} | {s['seconds']:.1f} | {rate:,.0f} | {s['peak_anon'] / GIB:.2f} |"
            )
    c, w = results["chunked"]["matches"], results["whole"]["matches"]
    print(f"matches peak RssAnon: chunked {c['peak_anon'] / GIB:.2f} GiB vs whole shard {w['peak_anon'] / GIB:.2f} "
          f"GiB ({w['peak_anon'] / c['peak_anon']:.2f}x less); chunked takes {c['seconds'] / w['seconds']:.2f}x the time")  # fmt: skip
    print(f"matches: chunked {c['rows']:,}, whole shard {w['rows']:,}")
    if "lm_describe_per_s" in facts:
        rate = facts["lm_describe_per_s"]
        print(
            f"tiny LM describer: {rate:.1f} documents/s → {args.docs / rate / 3600:.1f} h for this shard on this CPU"
        )


if __name__ == "__main__":
    main()
