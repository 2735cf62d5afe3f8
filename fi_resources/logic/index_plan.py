"""Which FAISS index fits a template bank of n vectors, with which parameters, and what it costs in bytes.

Pure: imports neither FAISS nor any model, so the rules are unit-tested on their own.

Tiers (cosine = inner product on L2-normalised float32 vectors, d = dimension, id = stored id bytes):

| kind            | used when                  | bytes per template                       | search                        |
|-----------------|----------------------------|------------------------------------------|-------------------------------|
| `flat`          | n <= flat_max (50k)        | 4d + id            (d=384: 1,536 + id)    | exact                         |
| `ivf_flat`      | flat_max < n <= ivf_max(4M)| 4d + 8 + id        (d=384: 1,544 + id)    | nprobe of nlist lists, exact  |
|                 |                            |                                          | scores inside them            |
| `ivf_pq_refine` | n > ivf_max                | m + 8 + d + id     (d=384: 488 + id)      | IVF-PQ shortlist of k_factor*k|
|                 |                            | (PQ code m bytes, list id 8, SQ8 copy d) | re-ranked on 8-bit vectors    |

plus a fixed nlist*d*4 bytes of centroids. For 18M templates of d=384 with 12-byte ids that is
~26 GiB as `ivf_flat` but ~8.4 GiB as `ivf_pq_refine`, which is why the tier switches at 4M (6 GB).

Rules (the FAISS wiki's guidance, "Guidelines to choose an index"):
- nlist = the power of two nearest 2*sqrt(n) (the wiki says 4-16*sqrt(n); the low end because k-means
  training is the slowest step on 2 cores), clamped to [16, 65536] and to <= n/39 so every centroid gets
  the 39 training points k-means asks for. 1M -> 2048, 18M -> 8192.
- train_size = min(n, 40*nlist) for IVF, and at least 65,536 for PQ so each 256-entry codebook sees
  enough points; a seeded uniform random sample of rows (not the first batch).
- nprobe = clamp(nlist/64, 8, nlist): scanning ~1.5% of the lists. bench/bench_index.py sweeps it; on
  its 1M synthetic bank (nlist 2048, 300 queries, 1 FAISS thread, shared machine) recall@6 against exact
  was 0.992 / 0.996 / 0.997 at nprobe 16 / 32 / 64 for IVF-Flat (60x / 38x / 24x faster than exact
  batched) and 0.967 / 0.971 / 0.972 for IVF-PQ+refine (47x / 27x / 18x); 32 keeps both above 0.95
  and 20x.
- PQ uses m = d/4 sub-quantizers of 8 bits (96 bytes for d=384) and a shortlist of k_factor = 16 x k,
  re-ranked on the SQ8 copy. Measured on 100k synthetic vectors: PQ48 reached recall@6 0.82 at
  k_factor 8 and 0.95 at 32; PQ96 reached 0.96-0.97 at k_factor 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FORMAT_VERSION = 1
KINDS = ("flat", "ivf_flat", "ivf_pq_refine")
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
    pq_nbits: int = 8
    k_factor: int = 0
    train_size: int = 0

    def factory(self) -> str:
        """The FAISS index_factory string (the refine stage of ivf_pq_refine is built separately)."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf_flat":
            return f"IVF{self.nlist},Flat"
        return f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_nbits}"

    def bytes_per_template(self, id_bytes: int = 0) -> int:
        """Marginal memory (and file size) of one more template, ids included."""
        if self.kind == "flat":
            return 4 * self.dim + id_bytes
        if self.kind == "ivf_flat":
            return 4 * self.dim + ID_LIST_BYTES + id_bytes
        code = math.ceil(self.pq_m * self.pq_nbits / 8)
        return code + ID_LIST_BYTES + self.dim + id_bytes

    def fixed_bytes(self) -> int:
        """Size-independent part: the coarse centroids (and PQ codebooks)."""
        centroids = 4 * self.nlist * self.dim
        codebooks = 4 * self.dim * (1 << self.pq_nbits) if self.kind == "ivf_pq_refine" else 0
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
    return min(nlist, max(8, nlist // 64))


def choose_pq_m(dim: int) -> int:
    """About 4 dimensions per sub-quantizer; m must divide dim."""
    target = max(1, dim // 4)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


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
        kind = "flat" if n <= th.flat_max else "ivf_flat" if n <= th.ivf_max else "ivf_pq_refine"
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
        pq_nbits=8,
        k_factor=16,
        train_size=min(n, max(train, 65_536)),
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
