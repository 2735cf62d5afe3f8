"""The FAISS template index: build, save and search (inner product on L2-normalised vectors = cosine)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

# Do not call faiss.omp_set_num_threads here: FAISS and torch share one OpenMP runtime in this process,
# so it would silently cut torch to one thread for every later training step (measured: fine-tuning
# fell from 185 to 56 tokens/s).


def build_index(vectors: np.ndarray, ids: list[str], folder: Path) -> dict:
    """Exact inner-product index (right for banks up to ~100k templates)."""
    if len(vectors) != len(ids):
        raise ValueError("one id per vector")
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(folder / "index.faiss"))
    (folder / "ids.json").write_text(json.dumps(ids))
    return {"index_type": "IndexFlatIP", "vectors": len(ids), "dim": int(vectors.shape[1])}


class TemplateIndex:
    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_MMAP)
        self.ids: list[str] = json.loads((folder / "ids.json").read_text())

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        if not self.ids or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        scores, idx = self.index.search(
            np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.ids))
        )
        return [
            [(self.ids[j], float(s)) for j, s in zip(row_i, row_s, strict=True) if j >= 0]
            for row_i, row_s in zip(idx, scores, strict=True)
        ]
