"""fi_resources/index.py on small clustered random data (seconds, not minutes)."""

import json

import faiss
import numpy as np
import pytest

from fi_resources.index import TemplateIndex, build_index, omp_threads
from fi_resources.logic.index_plan import IndexThresholds, recall_at_k

DIM = 32
KINDS = ["flat", "ivf_flat", "ivf_pq_flat", "ivf_pq_sq8"]


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 100), DIM)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def bank() -> tuple[np.ndarray, list[str]]:
    x = clustered(3_000)
    return x, [f"t{i:05d}" for i in range(len(x))]


@pytest.fixture(scope="module")
def built(bank, tmp_path_factory) -> dict:
    x, ids = bank
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(kind)
        out[kind] = (folder, build_index(x, ids, folder, kind=kind, seed=1, batch_size=700, threads=1))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_in_bank_queries_find_themselves(bank, built, kind):
    x, ids = bank
    folder, meta = built[kind]
    assert meta["kind"] == kind and meta["vectors"] == len(ids) and meta["dim"] == DIM
    index = TemplateIndex(folder)
    rows = np.arange(0, len(x), 37)
    hits = index.search(x[rows], k=3)
    assert [h[0][0] for h in hits] == [ids[r] for r in rows]
    assert all(h[0][1] == pytest.approx(1.0, abs=0.02) for h in hits)  # SQ8 re-ranking is approximate
    assert all(h[0][1] >= h[1][1] >= h[2][1] for h in hits)


@pytest.mark.parametrize("kind,min_recall", [("ivf_flat", 0.95), ("ivf_pq_flat", 0.9), ("ivf_pq_sq8", 0.9)])
def test_recall_against_exact(bank, built, kind, min_recall):
    x, _ = bank
    rng = np.random.default_rng(5)
    q = x[rng.choice(len(x), 200, replace=False)] + 0.3 * rng.standard_normal((200, DIM)).astype(np.float32)
    _, exact = TemplateIndex(built["flat"][0]).search_raw(q, 6)
    _, got = TemplateIndex(built[kind][0]).search_raw(q, 6)
    assert recall_at_k(got, exact, 6) >= min_recall
    # scanning every list makes IVF-Flat exact
    nlist = built[kind][1]["plan"]["nlist"]
    if kind == "ivf_flat":
        _, full = TemplateIndex(built[kind][0]).search_raw(q, 6, nprobe=nlist)
        assert recall_at_k(full, exact, 6) == 1.0


def test_flat_matches_brute_force(bank, built):
    x, ids = bank
    q = clustered(20, seed=9)
    hits = TemplateIndex(built["flat"][0]).search(q, k=6)
    scores = q @ x.T
    for row, h in zip(scores, hits, strict=True):
        best = np.argsort(-row)[:6]
        assert [t for t, _ in h] == [ids[i] for i in best]
        assert [s for _, s in h] == pytest.approx(row[best].tolist(), abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_saved_metadata_and_mmap_round_trip(bank, built, kind):
    x, ids = bank
    folder, meta = built[kind]
    saved = json.loads((folder / "index.json").read_text())
    assert saved == meta
    assert saved["format_version"] == 2 and len(saved["content_sha256"]) == 64
    assert saved["index_bytes"] == (folder / "index.faiss").stat().st_size
    if kind != "flat":
        assert saved["train_sample"] == saved["plan"]["train_size"] > 0
    mapped, loaded = TemplateIndex(folder, mmap=True), TemplateIndex(folder, mmap=False)
    assert isinstance(mapped._ids, np.memmap) and mapped.ids == ids
    if kind in ("ivf_pq_flat", "ivf_pq_sq8"):
        # The re-ranking codes are a file of their own, memory-mapped, not part of faiss's index.
        assert isinstance(mapped._codes, np.memmap) and not isinstance(loaded._codes, np.memmap)
        assert saved["refine_bytes"] >= len(ids) * (DIM if kind == "ivf_pq_sq8" else 4 * DIM)
        assert saved["index_bytes"] < len(ids) * DIM
    q = x[:50] + 0.1
    assert mapped.search(q, 5) == loaded.search(q, 5)


def test_auto_kind_uses_thresholds(tmp_path):
    x = clustered(1_000)
    ids = [str(i) for i in range(len(x))]
    assert build_index(x, ids, tmp_path / "a")["kind"] == "flat"
    th = IndexThresholds(flat_max=500, ivf_max=900)
    assert build_index(x, ids, tmp_path / "b", thresholds=th)["kind"] == "ivf_pq_sq8"
    th = IndexThresholds(flat_max=500, ivf_max=5_000)
    assert build_index(x, ids, tmp_path / "c", thresholds=th)["kind"] == "ivf_pq_flat"


def test_memmap_input_and_unnormalised_vectors(tmp_path):
    x = clustered(1_000) * 7.0
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    ids = [str(i) for i in range(len(x))]
    build_index(np.load(tmp_path / "v.npy", mmap_mode="r"), ids, tmp_path / "i", batch_size=128)
    hits = TemplateIndex(tmp_path / "i").search(x[:3], 1)
    assert [h[0][0] for h in hits] == ["0", "1", "2"]
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-5)  # cosine, not the raw inner product


def test_empty_bank(tmp_path):
    meta = build_index(np.zeros((0, DIM), np.float32), [], tmp_path)
    assert meta["vectors"] == 0 and meta["kind"] == "flat"
    index = TemplateIndex(tmp_path)
    assert len(index) == 0
    assert index.search(clustered(3), k=5) == [[], [], []]
    assert index.search(np.zeros((0, DIM), np.float32), k=5) == []


def test_bad_input_is_rejected(tmp_path):
    x = clustered(10)
    with pytest.raises(ValueError, match="one id per vector"):
        build_index(x, ["a"] * 9, tmp_path)
    with pytest.raises(ValueError, match="unique"):
        build_index(x, ["a"] * 10, tmp_path)
    with pytest.raises(ValueError, match="2-D"):
        build_index(x[0], ["a"], tmp_path)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_index(bad, [str(i) for i in range(10)], tmp_path)
    build_index(x, [str(i) for i in range(10)], tmp_path)
    index = TemplateIndex(tmp_path)
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.zeros((2, DIM + 1), np.float32), 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(x, 0)
    with pytest.raises(FileNotFoundError):
        TemplateIndex(tmp_path / "missing")


def test_unknown_format_version_is_refused(tmp_path):
    x = clustered(10)
    build_index(x, [str(i) for i in range(10)], tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format 99"):
        TemplateIndex(tmp_path)


def test_format_1_refined_index_is_still_read(bank, tmp_path):
    """Format 1 kept the re-ranker inside faiss's file (an IndexRefine)."""
    x, ids = bank
    base = faiss.index_factory(DIM, "IVF64,PQ16x4fs", faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefine(base, faiss.IndexFlatIP(DIM))
    index.train(x)
    index.add(x)
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    np.save(tmp_path / "ids.npy", np.array([i.encode() for i in ids]))
    plan = {"nprobe": 8, "k_factor": 32}
    (tmp_path / "index.json").write_text(
        json.dumps({"format_version": 1, "kind": "ivf_pq_flat", "plan": plan})
    )
    assert TemplateIndex(tmp_path).search(x[7:8], 1)[0][0][0] == ids[7]


def test_legacy_folder_is_still_read(tmp_path):
    x = clustered(20)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    faiss.write_index(flat, str(tmp_path / "index.faiss"))
    (tmp_path / "ids.json").write_text(json.dumps([f"id{i}" for i in range(20)]))
    assert TemplateIndex(tmp_path).search(x[4:5], 1)[0][0][0] == "id4"


def test_omp_threads_restores_the_previous_count():
    before = faiss.omp_get_max_threads()
    with omp_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(ValueError), omp_threads(0):
        pass


def test_ids_as_fixed_width_bytes_match_ids_as_strings(bank, built, tmp_path):
    x, ids = bank
    meta = build_index(x, np.array([i.encode() for i in ids], dtype="S6"), tmp_path, kind="flat", threads=1)
    assert meta["content_sha256"] == built["flat"][1]["content_sha256"]
    with pytest.raises(ValueError, match="unique"):
        build_index(x[:2], np.array([b"a", b"a"]), tmp_path / "dup", kind="flat")


class HashEncoder:
    """Deterministic stand-in for an Encoder: one clustered vector per text, looked up by its number."""

    dim = DIM

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def encode(self, texts):
        return self.vectors[[int(t) for t in texts]] if texts else np.zeros((0, DIM), np.float32)


def test_template_index_stage_embeds_into_a_memory_map_chunk_by_chunk(bank, built, tmp_path, monkeypatch):
    import pandas as pd

    from fi_resources.stages import retrieval

    x, ids = bank
    monkeypatch.setattr(retrieval, "ENCODE_CHUNK", 1_000)  # 3 chunks
    frame = pd.DataFrame(
        {"template_id": ids, "compatible_document_description": [str(i) for i in range(len(x))]}
    )
    seen = []
    meta = retrieval.build_template_index(
        frame, HashEncoder(x), tmp_path, progress=lambda done, total, _s: seen.append((done, total))
    ).value
    assert seen == [(1_000, 3_000), (2_000, 3_000), (3_000, 3_000)]
    assert meta["content_sha256"] == built["flat"][1]["content_sha256"]  # same bytes as from vectors in RAM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy", "index.faiss", "index.json"]
    empty = retrieval.build_template_index(frame.iloc[:0], HashEncoder(x), tmp_path / "empty").value
    assert empty["vectors"] == 0
