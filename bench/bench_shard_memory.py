"""Peak memory of one document shard: the `documents` asset's path (passages written to Parquet in batches as
the file is read) vs all passages in one frame (`read_document_shard`) vs parsing the whole file at once.

    PYTHONPATH=. .venv/bin/python bench/bench_shard_memory.py              # 1 GB JSONL + Parquet, 20 MB document
    PYTHONPATH=. .venv/bin/python bench/bench_shard_memory.py --gb 0.1     # quick run

Writes synthetic shards (distinct ~5 KB documents of paragraphs; one 20 MB single-document JSONL), then in a
fresh child process each, with the default settings (split into passages, two sampled per document): the
asset's path (`ShardPassages` into `Warehouse.stage_table`, then published), the kept passages as one frame
(`read_document_shard`, the asset before), and, as the baseline measured in the same run, what the reader did
first: every JSONL line parsed into a list and a DataFrame made of it. Reports peak RssAnon (sampled every 20 ms; see
bench/bench_bank_memory.py), VmHWM, seconds, and peak / file size.
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

WORDS = [
    "the",
    "of",
    "a",
    "river",
    "city",
    "model",
    "data",
    "which",
    "was",
    "in",
    "from",
    "by",
    "their",
    "with",
    "early",
    "study",
    "light",
    "north",
]


def paragraph(i: int, words: int = 160) -> str:
    return " ".join(WORDS[(i * 7 + j * 3 + j // 5) % len(WORDS)] for j in range(words)) + f" ({i})."


def write_shards(folder: Path, target_bytes: int) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl, parquet = folder / "big.jsonl", folder / "big.parquet"
    written, i, batch = 0, 0, []
    with (
        open(jsonl, "w", encoding="utf8") as f,
        pq.ParquetWriter(parquet, pa.schema([("title", pa.string()), ("text", pa.string())])) as w,
    ):
        while written < target_bytes:
            text = "\n\n".join(paragraph(i * 6 + k) for k in range(6))
            row = {"title": f"Document {i}", "text": text}
            line = json.dumps(row) + "\n"
            f.write(line)
            written += len(line)
            batch.append(row)
            i += 1
            if len(batch) == 2_000:
                w.write_table(pa.Table.from_pylist(batch))
                batch = []
        if batch:
            w.write_table(pa.Table.from_pylist(batch))
    one = folder / "one.jsonl"
    one.write_text(
        json.dumps({"title": "One", "text": "\n\n".join(paragraph(k) for k in range(20 * 2**20 // 900))})
        + "\n"
    )
    return {"jsonl 1 GB": jsonl, "parquet 1 GB": parquet, "one 20 MB document": one}


def child(mode: str, path: Path) -> None:
    import pandas as pd

    from fi_resources.settings import DocumentSettings
    from fi_resources.sources import read_document_shard
    from fi_resources.stages.documents import ShardPassages
    from fi_resources.warehouse import Warehouse

    with PeakMemory() as mem:
        t = time.perf_counter()
        if mode == "asset":  # what the documents asset does: passages written in batches as they are read
            passages = ShardPassages(path, "bench", DocumentSettings())
            wh = Warehouse(path.parent / "home")
            staged = wh.stage_table("documents", "bench", passages.batches())
            wh.publish_table(staged)
            rows, docs = staged.rows, passages.tally.source_documents
        elif mode == "in memory":
            df, tally = read_document_shard(path, DocumentSettings())
            rows, docs = len(df), tally.source_documents
        else:  # the earlier reader: all rows parsed, then one DataFrame
            with open(path, "rb") as f:
                frame = pd.DataFrame([json.loads(line) for line in f], dtype=object)
            rows = docs = len(frame)
        seconds = time.perf_counter() - t
    print(
        json.dumps(
            {"peak_anon": mem.peak_anon, "vm_hwm": mem.hwm, "seconds": seconds, "rows": rows, "docs": docs}
        )
    )


def run_child(mode: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(f"child {mode} {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0, help="size of the big shards")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_shard_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    shards = write_shards(work, int(args.gb * 2**30))
    print(f"shards written in {time.perf_counter() - t:.0f}s to {work}", flush=True)
    for name, path in shards.items():
        size = path.stat().st_size
        modes = ["asset", "in memory", "whole file"] if path.suffix == ".jsonl" else ["asset", "in memory"]
        for mode in modes:
            r = run_child(mode, path)
            print(
                f"{name} ({size / 2**20:,.0f} MiB), {mode}: {r['docs']:,} documents -> {r['rows']:,} rows in "
                f"{r['seconds']:.0f}s; peak RssAnon {r['peak_anon'] / GIB:.2f} GiB ({r['peak_anon'] / size:.2f}x the file), "
                f"VmHWM {r['vm_hwm'] / GIB:.2f} GiB",
                flush=True,
            )
        path.unlink()


if __name__ == "__main__":
    main()
