"""Template-index benchmark: the index fi_resources/index.py picks vs exact search on a synthetic bank.

    PYTHONPATH=. .venv/bin/python bench/bench_index.py            # 1M x 384 (a few minutes, ~6 GB RAM)
    PYTHONPATH=. .venv/bin/python bench/bench_index.py --n 100000 # quick run

The bank imitates sentence embeddings instead of uniform noise, which no ANN index can beat exact on:
- a shared direction g (real embeddings are anisotropic: the demo's 199 template vectors have a mean
  pairwise cosine of 0.37),
- n/500 topics whose sizes follow a log-normal (a few big topics, many small); topic centre
  c_t = normalise(0.6 g + z_t), z_t ~ N(0, I/d), so two topics have cosine ~0.26,
- each template x = normalise(c_t + s_t h), h ~ N(0, I/d), with a per-topic spread s_t ~ U(0.6, 1.2)
  (cosine to its centre 0.64-0.86).
Queries ("documents") are drawn near bank points: q = normalise(x_i + 1.0 h) for random rows i, so
q is about as close to x_i (cosine ~0.7) as it is to x_i's topic-mates.

Exact search is an in-memory IndexFlatIP (the best case for exact: one BLAS sgemm per query batch).
Every time is the best of 3 (the machine is shared), with the same thread count for both. Both are timed on the same query batch (documents are searched a shard at a time in the pipeline) and
one query at a time. recall@6 = share of the exact top 6 the index returns. Ratios are in-run.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import torch

from fi_resources.index import TemplateIndex, build_index, omp_threads
from fi_resources.logic.index_plan import IndexPlan, IndexThresholds, plan_index, recall_at_k

K = 6
TARGET_N = 18_000_000


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_bank(
    n: int, dim: int, seed: int, chunk: int = 100_000, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n x dim float32 unit vectors (mixture of Gaussians on the sphere) and each row's topic; written into
    `out` (e.g. an np.memmap) chunk by chunk when given."""
    rng = np.random.default_rng(seed)
    topics = max(8, n // 500)
    g = unit(rng.standard_normal((1, dim), dtype=np.float32))
    centres = unit(0.6 * g + rng.standard_normal((topics, dim), dtype=np.float32) / float(np.sqrt(dim)))
    spread = rng.uniform(0.6, 1.2, topics).astype(np.float32)
    weights = rng.lognormal(0.0, 1.0, topics)
    topic = rng.choice(topics, size=n, p=weights / weights.sum()).astype(np.int32)
    x = np.empty((n, dim), dtype=np.float32) if out is None else out
    for lo in range(0, n, chunk):
        t = topic[lo : lo + chunk]
        noise = rng.standard_normal((len(t), dim), dtype=np.float32) / float(np.sqrt(dim))
        x[lo : lo + chunk] = unit(centres[t] + spread[t, None] * noise)
    return x, topic


def make_queries(bank: np.ndarray, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(bank), size=m, replace=False)
    noise = rng.standard_normal((m, bank.shape[1]), dtype=np.float32) / float(np.sqrt(bank.shape[1]))
    return unit(bank[rows] + 1.0 * noise)


def one_at_a_time(search, queries: np.ndarray) -> None:
    for i in range(len(queries)):
        search(queries[i : i + 1], K)


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="templates in the synthetic bank")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=300, help="batch of document queries")
    ap.add_argument("--single", type=int, default=5, help="queries also timed one at a time")
    ap.add_argument("--kinds", default="auto,ivf_pq_sq8,ivf_flat", help="comma list: auto or an index kind")
    ap.add_argument("--nprobes", default="16,32,64", help="nprobe sweep for IVF kinds")
    ap.add_argument(
        "--threads", type=int, default=None, help="threads for FAISS and torch alike (default: as is)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where indexes are written (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    print(
        f"faiss {faiss.__version__}, OpenMP threads {faiss.omp_get_max_threads()}, n={args.n:,} d={args.dim}"
    )
    if args.threads:
        torch.set_num_threads(args.threads)  # same thread count for exact (torch) and FAISS
    t_gen, (bank, _) = timed(lambda: make_bank(args.n, args.dim, args.seed))
    queries = make_queries(bank, args.queries, args.seed)
    print(f"synthetic bank generated in {t_gen:.1f}s ({bank.nbytes / 2**30:.2f} GiB)")

    # Two exact baselines; ratios are taken against the faster one (torch's MKL sgemm + topk was ~5x
    # faster than IndexFlatIP's OpenBLAS path in development runs on this machine).
    with omp_threads(args.threads):
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(bank)
        t_flat, (ex_s, ex_i) = timed(partial(flat.search, queries, K))
        t_flat_1, _ = timed(partial(one_at_a_time, flat.search, queries[: args.single]))
        flat.reset()
    bank_t = torch.from_numpy(bank)

    def torch_exact(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out_s, out_i = [], []
        for lo in range(0, len(q), 128):  # 128 x 1M scores = 512 MB at a time
            s, i = (torch.from_numpy(q[lo : lo + 128]) @ bank_t.T).topk(K, dim=1)
            out_s.append(s.numpy())
            out_i.append(i.numpy())
        return np.concatenate(out_s), np.concatenate(out_i)

    with torch.inference_mode():
        t_torch, (tq_s, tq_i) = timed(lambda: torch_exact(queries), 3)
        t_torch_1, _ = timed(partial(one_at_a_time, lambda q, _k: torch_exact(q), queries[: args.single]), 3)
    agree = recall_at_k(tq_i, ex_i, K)
    t_exact, t_exact_1 = min(t_flat, t_torch), min(t_flat_1, t_torch_1)
    exact_ms = 1000 * t_exact / len(queries)
    exact_1_ms = 1000 * t_exact_1 / max(1, args.single)
    top1 = float(ex_s[:, 0].mean())
    print(
        f"exact IndexFlatIP: {1000 * t_flat / len(queries):.3f} ms/query batched, "
        f"{1000 * t_flat_1 / max(1, args.single):.2f} one at a time; torch matmul+topk: "
        f"{1000 * t_torch / len(queries):.3f} / {1000 * t_torch_1 / max(1, args.single):.2f} "
        f"(top-6 agreement {agree:.4f}); torch threads {torch.get_num_threads()}"
    )
    print(f"queries: mean top-1 cosine {top1:.3f}, mean 6th {float(ex_s[:, K - 1].mean()):.3f}")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_index_"))
    ids = [f"{i:012x}" for i in range(args.n)]  # 12 characters, like the pipeline's template ids
    results = {
        "n": args.n,
        "dim": args.dim,
        "queries": len(queries),
        "exact_ms_per_query_batch": exact_ms,
        "exact_flat_ms_batch": 1000 * t_flat / len(queries),
        "exact_torch_ms_batch": 1000 * t_torch / len(queries),
        "exact_ms_per_query_single": exact_1_ms,
        "query_top1_cosine": top1,
        "indexes": [],
    }
    rows = []
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        forced = None if kind == "auto" else kind
        folder = work / (kind if forced else "auto")
        shutil.rmtree(folder, ignore_errors=True)
        meta = build_index(bank, ids, folder, kind=forced, seed=args.seed, threads=args.threads)
        index = TemplateIndex(folder)
        plan = meta["plan"]
        sweep = [None] if meta["kind"] == "flat" else [int(p) for p in args.nprobes.split(",")]
        if meta["kind"] != "flat" and plan["nprobe"] not in sweep:
            sweep.append(plan["nprobe"])
        for nprobe in sorted(sweep, key=lambda p: p or 0):
            search = partial(index.search_raw, nprobe=nprobe, threads=args.threads)
            t_b, (_, got) = timed(partial(search, queries, K), 3)
            t_1, _ = timed(partial(one_at_a_time, search, queries[: args.single]), 3)
            ms, ms1 = 1000 * t_b / len(queries), 1000 * t_1 / max(1, args.single)
            rec = recall_at_k(got, ex_i, K)
            row = {
                "kind": meta["kind"],
                "nlist": plan["nlist"],
                "nprobe": nprobe or 0,
                "default": (nprobe or 0) == plan["nprobe"],
                "recall@6": rec,
                "ms_per_query_batch": ms,
                "speedup_batch": exact_ms / ms,
                "ms_per_query_single": ms1,
                "speedup_single": exact_1_ms / ms1,
            }
            rows.append(row)
        stored = meta["index_bytes"] + meta["ids_bytes"] + meta.get("refine_bytes", 0)
        per_t = stored / args.n
        p18 = plan_index(TARGET_N, args.dim, kind=meta["kind"])
        fixed = IndexPlan(**{k: v for k, v in plan.items() if k != "factory"}).fixed_bytes()
        measured_18m = fixed + (stored - fixed) / args.n * TARGET_N
        info = {
            "kind": meta["kind"],
            "factory": plan["factory"],
            "train_sample": meta["train_sample"],
            "train_s": meta["train_seconds"],
            "add_s": meta["add_seconds"],
            "build_s": meta["build_seconds"],
            "bytes_per_template": per_t,
            "projected_18M_GiB_measured": measured_18m / 2**30,
            "projected_18M_GiB_rule": p18.projected_bytes(TARGET_N, id_bytes=12) / 2**30,
            "plan_18M": p18.factory(),
        }
        results["indexes"].append(info)
        del index
        shutil.rmtree(folder, ignore_errors=True)
    results["sweep"] = rows
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)

    print("\nindex builds")
    print(
        f"{'kind':<14} {'factory':<20} {'train sample':>12} {'train s':>8} {'add s':>7} {'build s':>8}"
        f" {'B/template':>10} {'18M GiB (meas.)':>15} {'18M GiB (rule)':>14}"
    )
    for i in results["indexes"]:
        print(
            f"{i['kind']:<14} {i['factory']:<20} {i['train_sample']:>12,} {i['train_s']:>8.1f} {i['add_s']:>7.1f}"
            f" {i['build_s']:>8.1f} {i['bytes_per_template']:>10.1f} {i['projected_18M_GiB_measured']:>15.2f}"
            f" {i['projected_18M_GiB_rule']:>14.2f}"
        )
    print(
        f"(exact flat for reference: {4 * args.dim + 12} B/template, 18M -> "
        f"{(4 * args.dim + 12) * TARGET_N / 2**30:.1f} GiB; the rule picks {plan_index(TARGET_N, args.dim).kind}"
        f" = {plan_index(TARGET_N, args.dim).factory()} at 18M with thresholds {IndexThresholds()})"
    )
    print(
        f"\nsearch, k={K}, {len(queries)} queries; exact = {exact_ms:.3f} ms/query batched, "
        f"{exact_1_ms:.2f} ms one at a time"
    )
    print(
        f"{'kind':<14} {'nlist':>6} {'nprobe':>6} {'recall@6':>9} {'ms/q batch':>11} {'x exact':>8}"
        f" {'ms/q single':>12} {'x exact':>8}"
    )
    for r in rows:
        mark = " <- default" if r["default"] else ""
        print(
            f"{r['kind']:<14} {r['nlist']:>6} {r['nprobe']:>6} {r['recall@6']:>9.4f} {r['ms_per_query_batch']:>11.3f}"
            f" {r['speedup_batch']:>8.1f} {r['ms_per_query_single']:>12.3f} {r['speedup_single']:>8.1f}{mark}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.2f} GiB")
    results["peak_rss_GiB"] = peak
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
