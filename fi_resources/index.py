"""The FAISS template index: build (streamed in batches), save with versioned metadata, memory-map, search.

Cosine similarity = inner product on L2-normalised float32 vectors; vectors are normalised again here, so
callers may pass raw embeddings. The index kind follows the bank size (fi_resources/logic/index_plan.py):
exact `IndexFlatIP` for small banks; above that an IVF index of 4-bit fast-scan PQ codes whose shortlist
(k_factor * k) is re-ranked on the float vectors (up to a few million) or on 8-bit scalar-quantised ones.

A folder holds `index.faiss`, `ids.npy` (fixed-width UTF-8 ids, memory-mapped) and `index.json` (format
version, plan, sample size, timings, bytes, sha256 of the files). The re-ranked kinds (format 2) also hold
`refine.faiss` (the re-ranker's codec: nothing per template) and `refine_codes.npy` (its n x code-size
codes), written batch by batch through a memory map while the IVF index is filled and read back through
one, so neither building nor searching holds the re-ranking vectors in RAM: a search reads only the
shortlisted rows and scores them in numpy. Format 1 kept them in faiss's `IndexRefine`, which
`write_index` serialises whole from RAM; such folders are still read. `index.json` is written last, so a
folder without it is incomplete (or written by the pre-versioned code, which is still read).

Memory-mapping: `faiss.read_index(path, IO_FLAG_MMAP_IFC)` maps IndexFlat codes and IVF-Flat inverted
lists; measured after loading: +0-2 MB resident instead of the file size for Flat and IVF-Flat on
200k x 384. The IVF fast-scan lists (block layout) are NOT mapped by faiss 1.15: their codes (d/4 + 8
bytes per template, ~1.8 GB at 18M) are read into RAM; bench/bench_bank_memory.py measures what a build
and a search of a multi-million bank keep resident. The older `IO_FLAG_MMAP` maps only IVF-Flat lists,
and combining the two flags raises an error in faiss 1.15.

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
    READABLE_FORMATS,
    REFINED,
    IndexPlan,
    IndexThresholds,
    plan_index,
    sample_rows,
)

log = logging.getLogger(__name__)

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "ids.npy", "index.json"
# The re-ranked kinds (format 2): the re-ranker's codec, and its codes as an (n x code_size) uint8 array.
REFINE_FILE, REFINE_CODES_FILE = "refine.faiss", "refine_codes.npy"
RERANK_QUERY_BATCH = 64  # queries re-ranked at a time: bounds the decoded shortlist held in memory
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


def _new_index(plan: IndexPlan) -> tuple[faiss.Index, faiss.Index | None]:
    """The searched index and, for the re-ranked kinds, the (empty) codec of the re-ranking vectors."""
    ip = faiss.METRIC_INNER_PRODUCT
    if plan.kind == "flat":
        return faiss.IndexFlatIP(plan.dim), None
    base = faiss.index_factory(plan.dim, plan.factory(), ip)
    # 10 k-means iterations instead of FAISS's 25: training cost is linear in them and is the slowest
    # step of a build on 2 cores; recall is checked by bench/bench_index.py with these settings.
    faiss.extract_index_ivf(base).cp.niter = 10
    if plan.kind == "ivf_flat":
        return base, None
    base.pq.cp.niter = 10
    # The re-ranker: float vectors (exact cosine) or 8-bit scalar-quantised ones (4x smaller). Only its
    # codec lives in faiss; the codes go to REFINE_CODES_FILE as they are made (module docstring).
    if plan.kind == "ivf_pq_flat":
        return base, faiss.IndexFlatIP(plan.dim)
    return base, faiss.IndexScalarQuantizer(plan.dim, faiss.ScalarQuantizer.QT_8bit, ip)


def _ids_array(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "S":
        return ids  # already fixed-width UTF-8 (a large bank's ids without one Python str per template)
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
    ids: Sequence[str] | np.ndarray,
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
    ids_arr = _ids_array(ids)
    if len(np.unique(ids_arr)) != n:
        raise ValueError("template ids must be unique")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    plan = plan_index(n, dim, thresholds, kind)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index, refine = _new_index(plan)
    start = time.perf_counter()
    train_seconds = 0.0
    codes = None
    with omp_threads(threads):
        if plan.kind != "flat":
            rows = sample_rows(n, plan.train_size, seed)
            sample = _normalised(vectors[rows])
            faiss.extract_index_ivf(index).cp.seed = seed
            log.info(f"training {plan.factory()} on a random sample of {len(rows):,} of {n:,} vectors")
            t = time.perf_counter()
            index.train(sample)
            if refine is not None:
                refine.train(sample)
            train_seconds = time.perf_counter() - t
            del sample
        if refine is not None:
            codes = np.lib.format.open_memmap(
                folder / REFINE_CODES_FILE, mode="w+", dtype=np.uint8, shape=(n, refine.sa_code_size())
            )
        t = time.perf_counter()
        for lo in range(0, n, batch_size):
            batch = _normalised(vectors[lo : lo + batch_size])
            index.add(batch)
            if codes is not None:
                codes[lo : lo + len(batch)] = refine.sa_encode(batch)
            done = min(n, lo + batch_size)
            if n > batch_size:
                rate = done / max(1e-9, time.perf_counter() - t)
                log.info(f"added {done:,}/{n:,} vectors ({rate:,.0f}/s)")
        add_seconds = time.perf_counter() - t
    build_seconds = time.perf_counter() - start
    faiss.write_index(index, str(folder / INDEX_FILE))
    files = [folder / INDEX_FILE, folder / IDS_FILE]
    if codes is not None:
        codes.flush()
        del codes
        faiss.write_index(refine, str(folder / REFINE_FILE))
        files += [folder / REFINE_FILE, folder / REFINE_CODES_FILE]
    np.save(folder / IDS_FILE, ids_arr)
    index_bytes = (folder / INDEX_FILE).stat().st_size
    ids_bytes = (folder / IDS_FILE).stat().st_size
    refine_bytes = sum(f.stat().st_size for f in files[2:])
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
        "refine_bytes": refine_bytes,
        "bytes_per_template": round((index_bytes + ids_bytes + refine_bytes) / n, 1) if n else None,
        "mmap": True,
        "content_sha256": _sha256(*files),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    log.info(
        f"{plan.kind} index of {n:,} x {dim} built in {build_seconds:.1f}s "
        f"(train {train_seconds:.1f}s), {(index_bytes + refine_bytes) / 2**20:.1f} MiB"
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
            if version not in READABLE_FORMATS:
                raise ValueError(
                    f"{folder} holds index format {version}, this code reads {FORMAT_VERSION}; rebuild it"
                )
            self._ids = np.load(folder / IDS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
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
        # Format 2 keeps a re-ranked kind's codes outside faiss (format 1 used faiss's IndexRefine).
        self._refine, self._codes = None, None
        if (folder / REFINE_FILE).exists():
            self._refine = faiss.read_index(str(folder / REFINE_FILE))
            self._codes = np.load(
                folder / REFINE_CODES_FILE, mmap_mode="r" if mmap else None, allow_pickle=False
            )
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
            if self._codes is not None:
                shortlist = min(len(self), k * int(k_factor or self.k_factor))
                with omp_threads(threads):
                    _, rows = self.index.search(q := _normalised(queries), shortlist, params=ivf)
                return self._rerank(q, rows, k)
            if self.kind in REFINED:
                params = faiss.IndexRefineSearchParameters(
                    k_factor=float(k_factor or self.k_factor), base_index_params=ivf
                )
            else:
                params = ivf
        with omp_threads(threads):
            return self.index.search(_normalised(queries), k, params=params)

    def _rerank(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of each shortlist by the cosine of its decoded re-ranking vector. Only the shortlisted
        rows of the memory-mapped codes are read."""
        out_s = np.full((len(rows), k), -np.finfo(np.float32).max, np.float32)
        out_i = np.full((len(rows), k), -1, np.int64)
        for lo in range(0, len(rows), RERANK_QUERY_BATCH):
            r = rows[lo : lo + RERANK_QUERY_BATCH]
            found = r >= 0
            codes = np.asarray(self._codes[np.where(found, r, 0).ravel()])
            vecs = self._refine.sa_decode(codes).reshape(*r.shape, -1)
            scores = np.einsum("qsd,qd->qs", vecs, queries[lo : lo + RERANK_QUERY_BATCH])
            scores[~found] = -np.inf
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best = np.take_along_axis(scores, top, axis=1)
            hit = np.isfinite(best)
            out_s[lo : lo + len(r), : top.shape[1]] = np.where(hit, best, out_s[0, 0])
            out_i[lo : lo + len(r), : top.shape[1]] = np.where(hit, np.take_along_axis(r, top, axis=1), -1)
        return out_s, out_i

    def search(self, queries: np.ndarray, k: int, **kwargs: int | None) -> list[list[tuple[str, float]]]:
        scores, rows = self.search_raw(queries, k, **kwargs)
        return [
            [(self._ids[j].decode("utf-8"), float(s)) for j, s in zip(r, sc, strict=True) if j >= 0]
            for r, sc in zip(rows, scores, strict=True)
        ]
