"""Which FAISS index fits a template bank of n vectors, with which parameters, and what it costs in bytes.

Pure: imports neither FAISS nor any model, so the rules are unit-tested on their own.

Tiers (cosine = inner product on L2-normalised float32 vectors, d = dimension, id = stored id bytes;
every IVF list entry also stores an 8-byte id):

| kind          | auto-picked when            | bytes per template         | d=384       | search                   |
|---------------|-----------------------------|----------------------------|-------------|--------------------------|
| `flat`        | n <= flat_max (50k)         | 4d + id                    | 1,536 + id  | exact                    |
| `ivf_pq_flat` | flat_max < n <= ivf_max (4M)| d/4 + 8 + 4d + id          | 1,640 + id  | IVF-PQ 4-bit fast-scan   |
|               |                             |                            |             | shortlist of k_factor*k, |
|               |                             |                            |             | re-ranked exactly (float)|
| `ivf_pq_sq8`  | n > ivf_max                 | d/4 + 8 + d + id           | 488 + id    | same, re-ranked on 8-bit |
|               |                             |                            |             | scalar-quantised vectors |
| `ivf_flat`    | only when asked for         | 4d + 8 + id                | 1,544 + id  | nprobe lists scanned in  |
|               |                             |                            |             | float (bench comparison) |

plus a fixed nlist*d*4 bytes of centroids. For 18M templates of d=384 with 12-byte ids that is ~26 GiB
with float vectors but ~8.4 GiB as `ivf_pq_sq8`, which is why the tier switches at 4M (~6 GiB). Only
the fast-scan codes (d/4 + 8 bytes) are held in RAM; ids and the re-ranking codes are memory-mapped
when searching (and written through a memory map when building), so they are read from the page cache
only for the shortlisted rows: ~1.9 GiB resident for 18M (bench/bench_bank_memory.py).

Why fast-scan PQ instead of IVF-Flat for the middle tier: with queries in batches (a shard of documents
at a time), exact search is one BLAS sgemm that reuses every bank vector across the batch, while
IVF-Flat reads 1.5 KB per scanned vector per query and is memory-bound. On the 1M bench IVF-Flat at
recall@6 0.996 was only 8.4x faster than exact (torch sgemm+topk, 1 thread each), not the 20x target.
4-bit fast-scan codes are 16x smaller and scanned with SIMD lookups: on 300k synthetic vectors
PQ192x4fs with a float re-ranker (k_factor 16, nprobe 16 of 1024) reached recall@6 0.98 at 26x
faster than exact batched, where IVF-Flat at nprobe 8 gave 0.99 at 15x.

Rules (after the FAISS wiki's "Guidelines to choose an index"):
- nlist = the power of two nearest 2*sqrt(n) (the wiki says 4-16*sqrt(n); the low end because k-means
  training is the slowest step on 2 cores), clamped to [16, 65536] and to <= n/39 so every centroid gets
  the 39 training points k-means asks for. 1M -> 2048, 18M -> 8192.
- train_size = min(n, 40*nlist): a seeded uniform random sample of rows (not the first batch).
- nprobe = clamp(nlist/32, 8, nlist): ~3% of the lists. On the 1M bench with IVF-Flat (nlist 2048)
  recall@6 was 0.992 / 0.996 / 0.997 at nprobe 16 / 32 / 64; bench/bench_index.py sweeps it. The
  1.5% used before (nlist/64) lost recall on a 2M bank with the SQ8 re-ranker: the shortlist held 0.967
  of the true top 6 at nprobe 32 of 2048 and 0.982 at 64 (recall@6 0.945 -> 0.960, at about the same
  ms/query); bench/bench_bank_memory.py measures the rule at 2M.
- PQ: m = d/2 sub-quantizers of 4 bits (96 bytes for d=384, fast-scan layout), shortlist k_factor = 32.
  On the 1M bench a shortlist of 16*k gave recall@6 0.973 (float re-rank) and 0.954 (SQ8) at nprobe 32,
  60x and 92x faster than exact batched; on 300k vectors 32*k raised recall by 0.01 at ~0.8x the speed
  of 16*k, which the 20x target leaves room for. With 32*k the 1M bench measured recall@6 0.989 (float
  re-rank) / 0.968 (SQ8) at nprobe 32, 83x / 81x faster than exact batched (1 thread each).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FORMAT_VERSION = 2  # 2: the re-ranked kinds keep their codes in a memory-mapped file beside faiss's
READABLE_FORMATS = (1, 2)
KINDS = ("flat", "ivf_flat", "ivf_pq_flat", "ivf_pq_sq8")
REFINED = ("ivf_pq_flat", "ivf_pq_sq8")
ID_LIST_BYTES = 8  # FAISS stores one int64 id per vector in each inverted list


@dataclass(frozen=True)
class IndexThresholds:
    """Bank sizes at which the index kind changes (inclusive upper bounds)."""

    flat_max: int = 50_000
    ivf_max: int = 4_000_000

    def __post_init__(self) -> None:
        if not 0 <= self.flat_max <= self.ivf_max:
            raise ValueError(f"need 0 <= flat_max <= ivf_max, got {self.flat_max}, {self.ivf_max}")


@dataclass(frozen=True)
class IndexPlan:
    kind: str
    n: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    pq_nbits: int = 4
    k_factor: int = 0
    train_size: int = 0

    def factory(self) -> str:
        """The FAISS index_factory string (the re-ranker of the PQ kinds is built separately)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf_flat":
            return f"IVF{self.nlist},Flat"
        return f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_nbits}fs"

    def bytes_per_template(self, id_bytes: int = 0) -> int:
        """Marginal memory (and file size) of one more template, ids included."""
        if self.kind == "flat":
            return 4 * self.dim + id_bytes
        if self.kind == "ivf_flat":
            return 4 * self.dim + ID_LIST_BYTES + id_bytes
        code = math.ceil(self.pq_m * self.pq_nbits / 8)
        refine = 4 * self.dim if self.kind == "ivf_pq_flat" else self.dim
        return code + ID_LIST_BYTES + refine + id_bytes

    def fixed_bytes(self) -> int:
        """Size-independent part: the coarse centroids (and PQ codebooks)."""
        centroids = 4 * self.nlist * self.dim
        codebooks = 4 * self.dim * (1 << self.pq_nbits) if self.kind in REFINED else 0
        return centroids + codebooks

    def projected_bytes(self, n: int, id_bytes: int = 0) -> int:
        return self.fixed_bytes() + n * self.bytes_per_template(id_bytes)

    def to_dict(self) -> dict:
        return {**asdict(self), "factory": self.factory()}


def nearest_power_of_two(x: float) -> int:
    if x <= 1:
        return 1
    low = 1 << int(math.floor(math.log2(x)))
    return low if x / low < (2 * low) / x else 2 * low


def choose_nlist(n: int) -> int:
    nlist = min(65_536, max(16, nearest_power_of_two(2 * math.sqrt(n))))
    while nlist > 1 and nlist * 39 > n:
        nlist //= 2
    return max(1, nlist)


def choose_nprobe(nlist: int) -> int:
    return min(nlist, max(8, nlist // 32))


def choose_pq_m(dim: int) -> int:
    """About 2 dimensions per 4-bit sub-quantizer (d/4 bytes per code); m must divide dim and be even
    (fast-scan packs codes in pairs), else the largest even m <= d/2 that divides it."""
    target = max(2, dim // 2)
    for m in range(target - target % 2, 1, -2):
        if dim % m == 0:
            return m
    return 2


def plan_index(
    n: int,
    dim: int,
    thresholds: IndexThresholds | None = None,
    kind: str | None = None,
) -> IndexPlan:
    """The index for n vectors of dimension dim; `kind` forces a tier (benchmarks, tests)."""
    if n < 0 or dim <= 0:
        raise ValueError(f"need n >= 0 and dim > 0, got n={n}, dim={dim}")
    th = thresholds or IndexThresholds()
    if kind is None:
        kind = "flat" if n <= th.flat_max else "ivf_pq_flat" if n <= th.ivf_max else "ivf_pq_sq8"
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")
    if kind == "flat":
        return IndexPlan(kind="flat", n=n, dim=dim)
    if n < 39 * 16:
        raise ValueError(f"{kind} needs at least {39 * 16} vectors to train, got {n}")
    nlist = choose_nlist(n)
    train = min(n, 40 * nlist)
    if kind == "ivf_flat":
        return IndexPlan(kind=kind, n=n, dim=dim, nlist=nlist, nprobe=choose_nprobe(nlist), train_size=train)
    return IndexPlan(
        kind=kind,
        n=n,
        dim=dim,
        nlist=nlist,
        nprobe=choose_nprobe(nlist),
        pq_m=choose_pq_m(dim),
        pq_nbits=4,
        k_factor=32,
        train_size=train,
    )


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """A seeded uniform sample of row numbers without replacement, sorted so reads from a
    memory-mapped array go forward through the file."""
    if size >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k that the approximate top-k recovered (order ignored)."""
    found, exact = np.asarray(found)[:, :k], np.asarray(exact)[:, :k]
    if found.shape[0] != exact.shape[0]:
        raise ValueError("found and exact need one row per query")
    if found.shape[0] == 0:
        return float("nan")
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(e[e >= 0].tolist())) for f, e in zip(found, exact, strict=True)
    )
    total = sum(int((e >= 0).sum()) for e in exact)
    return hits / total if total else float("nan")
