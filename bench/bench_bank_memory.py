"""Bank-scale template index in bounded memory: built from a memory-mapped embedding file, then searched.

    PYTHONPATH=. .venv/bin/python bench/bench_bank_memory.py                        # 200k and 2M x 384
    PYTHONPATH=. .venv/bin/python bench/bench_bank_memory.py --sizes 50000,200000   # quick run

For each size the synthetic bank of bench/bench_index.py is streamed to a .npy file (3 GB at 2M x 384).
A child process builds the index of the 18M rule (the kind `plan_index` picks for 18M templates, with the
plan of the bench's own size) from that file memory-mapped, as the `template_index` stage does; another
child loads the index and searches a batch of queries. Each child reports:
- peak RssAnon, sampled every 20 ms: memory the kernel cannot drop (heap, faiss's in-RAM codes);
- VmHWM: the peak of all resident pages, including file pages of the memory maps, which the kernel
  drops under memory pressure (so it grows with free RAM, not with what the process needs).
Resident bytes per template = the slope of peak RssAnon between the two sizes (the interpreter and the
libraries cancel out). The 18M projection = the largest size's peak + slope x (18M - n) + the 18M plan's
training sample (freed before the vectors are added, so counting it on top is conservative).
recall@6 is against exact search, computed chunk by chunk from the memory map. Ratios are in-run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import TARGET_N, K, make_bank, make_queries  # noqa: E402

from fi_resources.logic.index_plan import plan_index, recall_at_k  # noqa: E402

GIB = 2**30


class PeakMemory:
    """Samples /proc/self/status in a thread: peak RssAnon (bytes) and, at the end, VmHWM (bytes)."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.every_s, self.peak_anon, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def status(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, self.status("RssAnon"))
            time.sleep(self.every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon = max(self.peak_anon, self.status("RssAnon"))
        self.hwm = self.status("VmHWM")


def child(args: argparse.Namespace) -> None:
    """One measured step in a fresh process; prints one JSON line."""
    from fi_resources.index import (
        TemplateIndex,
        build_index,
    )  # imported before measuring: libraries cancel out

    base = PeakMemory.status("RssAnon")
    out: dict = {"baseline_anon": base}
    with PeakMemory() as mem:
        t = time.perf_counter()
        if args.child == "build":
            vectors = np.load(args.bank, mmap_mode="r")
            ids = np.char.mod("%012x", np.arange(len(vectors))).astype("S12")  # ids like the pipeline's
            meta = build_index(vectors, ids, Path(args.folder), kind=args.kind, seed=0)
            out |= {k: meta[k] for k in ("kind", "index_bytes", "ids_bytes", "refine_bytes", "train_sample")}
            out["plan"] = meta["plan"]
        else:
            index = TemplateIndex(Path(args.folder))
            _, rows = index.search_raw(np.load(args.query_file), K)
            np.save(args.rows, rows)
        out["seconds"] = time.perf_counter() - t
    out |= {"peak_anon": mem.peak_anon, "vm_hwm": mem.hwm}
    print(json.dumps(out))


def run_child(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"child {argv[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exact_top_k(bank: np.ndarray, queries: np.ndarray, k: int, chunk: int = 250_000) -> np.ndarray:
    """Exact top-k rows by inner product, reading the (memory-mapped) bank chunk by chunk."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for lo in range(0, len(bank), chunk):
        s = queries @ np.asarray(bank[lo : lo + chunk]).T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + lo], 1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def measure(n: int, dim: int, kind: str, queries_n: int, work: Path) -> dict:
    bank_path, folder = work / f"bank_{n}.npy", work / f"index_{n}"
    t = time.perf_counter()
    bank = np.lib.format.open_memmap(bank_path, mode="w+", dtype=np.float32, shape=(n, dim))
    make_bank(n, dim, seed=0, out=bank)
    bank.flush()
    queries = make_queries(bank, queries_n, seed=0)
    q_path, rows_path = work / f"queries_{n}.npy", work / f"rows_{n}.npy"
    np.save(q_path, queries)
    gen_s = time.perf_counter() - t
    truth = exact_top_k(bank, queries, K)
    del bank
    build = run_child("--child", "build", "--bank", str(bank_path), "--folder", str(folder), "--kind", kind)
    bank_path.unlink()  # the index is all a search needs
    search = run_child(
        "--child", "search", "--folder", str(folder), "--query-file", str(q_path), "--rows", str(rows_path)
    )
    recall = recall_at_k(np.load(rows_path), truth, K)
    stored = build["index_bytes"] + build["ids_bytes"] + build["refine_bytes"]
    print(
        f"n={n:,}: bank written in {gen_s:.0f}s; build {build['seconds']:.0f}s peak RssAnon "
        f"{build['peak_anon'] / GIB:.3f} GiB (VmHWM {build['vm_hwm'] / GIB:.3f}); search of {queries_n} "
        f"{search['seconds']:.2f}s peak RssAnon {search['peak_anon'] / GIB:.3f} GiB "
        f"(VmHWM {search['vm_hwm'] / GIB:.3f}); on disk {stored / n:.0f} B/template; recall@{K} {recall:.3f}",
        flush=True,
    )
    return {"n": n, "build": build, "search": search, "recall@6": recall, "disk_bytes": stored}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200000,2000000", help="two or more bank sizes, ascending")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--workdir", default=None, help="where banks and indexes are written (default: a temp dir)"
    )
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", choices=("build", "search"), help=argparse.SUPPRESS)
    for hidden in ("--bank", "--folder", "--kind", "--query-file", "--rows"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) < 2:
        raise SystemExit("give two sizes or more: the per-template cost is the slope between them")
    kind = plan_index(TARGET_N, args.dim).kind
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_bank_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"the 18M rule: {kind}; sizes {sizes}, d={args.dim}, work dir {work}", flush=True)
    rows = [measure(n, args.dim, kind, args.queries, work) for n in sizes]

    lo, hi = rows[0], rows[-1]
    plan_18m = plan_index(TARGET_N, args.dim)
    train_18m = plan_18m.train_size * args.dim * 4
    report: dict = {"kind": kind, "dim": args.dim, "sizes": rows}
    for step in ("build", "search"):
        slope = (hi[step]["peak_anon"] - lo[step]["peak_anon"]) / (hi["n"] - lo["n"])
        projected = (
            hi[step]["peak_anon"] + slope * (TARGET_N - hi["n"]) + (train_18m if step == "build" else 0)
        )
        report[f"{step}_resident_bytes_per_template"] = slope
        report[f"{step}_projected_18M_GiB"] = projected / GIB
        print(
            f"{step}: {slope:.1f} resident B/template -> 18M projected {projected / GIB:.2f} GiB (target <= 4)"
        )
    disk_18m = hi["disk_bytes"] / hi["n"] * TARGET_N
    report["disk_projected_18M_GiB"] = disk_18m / GIB
    print(
        f"on disk (memory-mapped, page cache): 18M projected {disk_18m / GIB:.2f} GiB; recall@6 at the largest "
        f"size {hi['recall@6']:.3f} (target >= 0.95)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
