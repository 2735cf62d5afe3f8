"""The FAISS template index: build (streamed in batches), save with versioned metadata, memory-map, search.

Cosine similarity = inner product on L2-normalised float32 vectors; vectors are normalised again here, so
callers may pass raw embeddings. The index kind follows the bank size (fi_resources/logic/index_plan.py):
exact `IndexFlatIP` for small banks; above that an IVF index of 4-bit fast-scan PQ codes whose shortlist is
re-ranked (`IndexRefine`) on the float vectors (up to a few million) or on 8-bit scalar-quantised ones.

A folder holds `index.faiss`, `ids.npy` (fixed-width UTF-8 ids, memory-mapped) and `index.json` (format
version, plan, sample size, timings, bytes, sha256 of both files). `index.json` is written last, so a
folder without it is incomplete (or written by the pre-versioned code, which is still read).

Memory-mapping: `faiss.read_index(path, IO_FLAG_MMAP_IFC)` maps IndexFlat codes, IVF-Flat inverted lists and
the float/SQ8 re-rankers; measured after loading: +0-2 MB resident instead of the file size for Flat,
IVF-Flat and SQ8 on 200k x 384, and +7 MB instead of 88 MB for `ivf_pq_flat` on 60k x 384. The IVF
fast-scan lists (block layout) are NOT mapped by faiss 1.15: their codes (d/4 + 8 bytes per template,
~1.8 GB at 18M) are read into RAM. The older `IO_FLAG_MMAP` maps only IVF-Flat lists (IndexFlat and
re-rankers are read into RAM), and combining the two flags raises an error in faiss 1.15.

Threads (measured with torch 2.13 + faiss-cpu 1.15.1 wheels, see tests/unit/test_index_threads.py):
- The faiss wheel bundles its own libgomp, but if torch is imported first its libgomp is loaded
  RTLD_GLOBAL and faiss's `omp_set_num_threads` binds to it: setting FAISS threads then also sets
  torch's (the earlier fine-tuning slowdown from 185 to 56 tokens/s). If faiss is imported first the two
  runtimes stay separate. `omp_threads()` below therefore sets FAISS threads only for the duration of a
  call and restores the previous value, which restores torch's too when they share the runtime.
- GNU OpenMP is not fork-safe: after any parallel region in the parent (a torch matmul is enough), the
  next parallel region in a fork()ed child hangs forever (GCC bug 60035; faiss issue #5206; OpenBLAS
  #294). Both torch and faiss calls hung in the child here. `install_fork_guard()` (run on import) drops
  OpenMP to one thread in a forked child for both runtimes, which made the child finish. Processes
  started with spawn/forkserver are unaffected.
- The wheel's OpenBLAS is the OpenMP build (`libopenblaso`), so FAISS's k-means sgemm calls do not
  start N^2 pthreads inside OpenMP regions (faiss issue #3700).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np

from fi_resources.logic.index_plan import (
    FORMAT_VERSION,
    REFINED,
    IndexPlan,
    IndexThresholds,
    plan_index,
    sample_rows,
)

log = logging.getLogger(__name__)

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "ids.npy", "index.json"
# Every kind we build is read through IO_FLAG_MMAP_IFC (see the module docstring).
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC


@contextlib.contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Run FAISS with n OpenMP threads, then restore the previous count (torch's too, if shared)."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


_FORK_GUARD = False


def _single_thread_after_fork() -> None:
    faiss.omp_set_num_threads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def install_fork_guard() -> None:
    """In a fork()ed child, use one OpenMP thread in FAISS and torch instead of hanging (libgomp)."""
    global _FORK_GUARD
    if not _FORK_GUARD and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_thread_after_fork)
        _FORK_GUARD = True


install_fork_guard()


def _normalised(chunk: np.ndarray) -> np.ndarray:
    x = np.array(chunk, dtype=np.float32, copy=True, order="C")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)  # an all-zero vector stays zero (cosine 0 to all)
    return x


def _new_index(plan: IndexPlan) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    if plan.kind == "flat":
        return faiss.IndexFlatIP(plan.dim)
    base = faiss.index_factory(plan.dim, plan.factory(), ip)
    # 10 k-means iterations instead of FAISS's 25: training cost is linear in them and is the slowest
    # step of a build on 2 cores; recall is checked by bench/bench_index.py with these settings.
    faiss.extract_index_ivf(base).cp.niter = 10
    if plan.kind == "ivf_flat":
        return base
    base.pq.cp.niter = 10
    # The re-ranker: float vectors (exact cosine) or 8-bit scalar-quantised ones (4x smaller).
    if plan.kind == "ivf_pq_flat":
        refine = faiss.IndexFlatIP(plan.dim)
    else:
        refine = faiss.IndexScalarQuantizer(plan.dim, faiss.ScalarQuantizer.QT_8bit, ip)
    # faiss's Python layer keeps references to base and refine for as long as the IndexRefine lives.
    index = faiss.IndexRefine(base, refine)
    index.k_factor = plan.k_factor
    return index


def _ids_array(ids: Sequence[str]) -> np.ndarray:
    encoded = [str(i).encode("utf-8") for i in ids]
    width = max((len(e) for e in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def build_index(
    vectors: np.ndarray,
    ids: Sequence[str],
    folder: Path,
    *,
    thresholds: IndexThresholds | None = None,
    kind: str | None = None,
    seed: int = 0,
    batch_size: int = 65_536,
    threads: int | None = None,
) -> dict:
    """Build, save and describe the index for `vectors` (n x d; an np.memmap works and is read in batches,
    so a bank larger than RAM only needs its compressed codes in memory). Returns the metadata dict."""
    vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n x dim), got shape {vectors.shape}")
    n, dim = int(vectors.shape[0]), int(vectors.shape[1])
    if len(ids) != n:
        raise ValueError(f"one id per vector: got {n} vectors and {len(ids)} ids")
    if dim == 0:
        raise ValueError("vectors have dimension 0")
    if len(set(ids)) != n:
        raise ValueError("template ids must be unique")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    plan = plan_index(n, dim, thresholds, kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = _new_index(plan)
    start = time.perf_counter()
    train_seconds = 0.0
    with omp_threads(threads):
        if plan.kind != "flat":
            rows = sample_rows(n, plan.train_size, seed)
            sample = _normalised(vectors[rows])
            faiss.extract_index_ivf(index).cp.seed = seed
            log.info(f"training {plan.factory()} on a random sample of {len(rows):,} of {n:,} vectors")
            t = time.perf_counter()
            index.train(sample)
            train_seconds = time.perf_counter() - t
            del sample
        t = time.perf_counter()
        for lo in range(0, n, batch_size):
            index.add(_normalised(vectors[lo : lo + batch_size]))
            done = min(n, lo + batch_size)
            if n > batch_size:
                rate = done / max(1e-9, time.perf_counter() - t)
                log.info(f"added {done:,}/{n:,} vectors ({rate:,.0f}/s)")
        add_seconds = time.perf_counter() - t
    build_seconds = time.perf_counter() - start
    faiss.write_index(index, str(folder / INDEX_FILE))
    ids_arr = _ids_array(ids)
    np.save(folder / IDS_FILE, ids_arr)
    index_bytes = (folder / INDEX_FILE).stat().st_size
    ids_bytes = (folder / IDS_FILE).stat().st_size
    meta = {
        "format_version": FORMAT_VERSION,
        "faiss_version": faiss.__version__,
        "index_type": type(index).__name__,
        "kind": plan.kind,
        "plan": plan.to_dict(),  # nested (Dagster shows it as JSON); the main knobs also flat below
        "factory": plan.factory(),
        "nlist": plan.nlist,
        "nprobe": plan.nprobe,
        "metric": "inner_product_on_l2_normalised",
        "vectors": n,
        "dim": dim,
        "train_sample": plan.train_size if plan.kind != "flat" else 0,
        "seed": seed,
        "train_seconds": round(train_seconds, 3),
        "add_seconds": round(add_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "index_bytes": index_bytes,
        "ids_bytes": ids_bytes,
        "bytes_per_template": round((index_bytes + ids_bytes) / n, 1) if n else None,
        "mmap": True,
        "content_sha256": _sha256(folder / INDEX_FILE, folder / IDS_FILE),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    log.info(
        f"{plan.kind} index of {n:,} x {dim} built in {build_seconds:.1f}s "
        f"(train {train_seconds:.1f}s), {index_bytes / 2**20:.1f} MiB"
    )
    return meta


class TemplateIndex:
    """A saved index, memory-mapped; search returns (template_id, cosine) best first."""

    def __init__(self, folder: str | Path, *, mmap: bool = True):
        folder = Path(folder)
        self.folder = folder
        meta_path = folder / META_FILE
        if meta_path.exists():
            self.meta: dict = json.loads(meta_path.read_text())
            version = self.meta.get("format_version")
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{folder} holds index format {version}, this code reads {FORMAT_VERSION}; rebuild it"
                )
            self._ids = np.load(folder / IDS_FILE, mmap_mode="r" if mmap else None)
        elif (folder / "ids.json").exists():
            # Written before the format was versioned: an IndexFlatIP with ids in JSON.
            self.meta = {"format_version": 0, "kind": "flat"}
            self._ids = np.array([i.encode() for i in json.loads((folder / "ids.json").read_text())])
        else:
            raise FileNotFoundError(f"no {META_FILE} in {folder}: not a template index (or incomplete)")
        self.index = faiss.read_index(str(folder / INDEX_FILE), MMAP_FLAGS if mmap else 0)
        if self.index.ntotal != len(self._ids):
            raise ValueError(f"{folder}: index has {self.index.ntotal} vectors but {len(self._ids)} ids")
        self.kind: str = self.meta["kind"]
        plan = self.meta.get("plan", {})
        self.nprobe: int = int(plan.get("nprobe") or 0)
        self.k_factor: int = int(plan.get("k_factor") or 0)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def ids(self) -> list[str]:
        return [b.decode("utf-8") for b in self._ids]

    def search_raw(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        k_factor: int | None = None,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (scores, row numbers), -1 where fewer than k exist; nprobe/k_factor override the plan."""
        queries = np.asarray(queries)
        if queries.ndim != 2:
            raise ValueError(f"queries must be 2-D (m x dim), got shape {queries.shape}")
        if len(queries) and queries.shape[1] != self.index.d:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index {self.index.d}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self))
        if len(self) == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        if self.kind != "flat":
            ivf = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
            if self.kind in REFINED:
                params = faiss.IndexRefineSearchParameters(
                    k_factor=float(k_factor or self.k_factor), base_index_params=ivf
                )
            else:
                params = ivf
        with omp_threads(threads):
            return self.index.search(_normalised(queries), k, params=params)

    def search(self, queries: np.ndarray, k: int, **kwargs: int | None) -> list[list[tuple[str, float]]]:
        scores, rows = self.search_raw(queries, k, **kwargs)
        return [
            [(self._ids[j].decode("utf-8"), float(s)) for j, s in zip(r, sc, strict=True) if j >= 0]
            for r, sc in zip(rows, scores, strict=True)
        ]
