import numpy as np
import pytest

from fi_resources.logic.index_plan import (
    IndexThresholds,
    choose_nlist,
    choose_pq_m,
    nearest_power_of_two,
    plan_index,
    recall_at_k,
    sample_rows,
)


def test_kind_follows_bank_size():
    th = IndexThresholds(flat_max=1_000, ivf_max=100_000)
    assert plan_index(0, 384, th).kind == "flat"
    assert plan_index(1_000, 384, th).kind == "flat"
    assert plan_index(1_001, 384, th).kind == "ivf_pq_flat"
    assert plan_index(100_000, 384, th).kind == "ivf_pq_flat"
    assert plan_index(100_001, 384, th).kind == "ivf_pq_sq8"
    assert plan_index(18_000_000, 384).kind == "ivf_pq_sq8"  # default thresholds


def test_forced_kind_and_bad_input():
    assert plan_index(5_000, 64, kind="ivf_flat").kind == "ivf_flat"
    with pytest.raises(ValueError, match="unknown index kind"):
        plan_index(5_000, 64, kind="hnsw")
    with pytest.raises(ValueError, match="at least"):
        plan_index(100, 64, kind="ivf_flat")
    with pytest.raises(ValueError):
        plan_index(-1, 64)
    with pytest.raises(ValueError):
        IndexThresholds(flat_max=10, ivf_max=5)


def test_nlist_rule():
    assert nearest_power_of_two(2800) == 2048 and nearest_power_of_two(3000) == 4096
    assert choose_nlist(1_000_000) == 2048
    assert choose_nlist(18_000_000) == 8192
    for n in [700, 5_000, 60_000, 10**6, 10**8]:
        nlist = choose_nlist(n)
        assert nlist & (nlist - 1) == 0 and 39 * nlist <= n
    assert choose_nlist(10**12) == 65_536


def test_plan_parameters_and_bytes():
    p = plan_index(1_000_000, 384, kind="ivf_flat")
    assert (p.nlist, p.nprobe, p.train_size) == (2048, 64, 40 * 2048)
    assert p.factory() == "IVF2048,Flat"
    assert p.bytes_per_template(12) == 4 * 384 + 8 + 12
    q = plan_index(18_000_000, 384)
    assert q.pq_m == 192 and q.k_factor == 32 and q.factory() == "IVF8192,PQ192x4fs"
    assert q.bytes_per_template(12) == 96 + 8 + 384 + 12
    m = plan_index(1_000_000, 384)
    assert m.kind == "ivf_pq_flat" and m.bytes_per_template(12) == 96 + 8 + 4 * 384 + 12
    assert q.projected_bytes(18_000_000, 12) < 9 * 2**30  # vs ~26 GiB for ivf_flat
    assert plan_index(10, 384).bytes_per_template() == 1536
    assert choose_pq_m(384) == 192 and choose_pq_m(100) == 50 and choose_pq_m(30) == 10


def test_sample_rows_is_seeded_uniform_and_sorted():
    a = sample_rows(1_000_000, 5_000, seed=3)
    assert len(np.unique(a)) == 5_000 and (np.diff(a) > 0).all()
    assert np.array_equal(a, sample_rows(1_000_000, 5_000, seed=3))
    assert not np.array_equal(a, sample_rows(1_000_000, 5_000, seed=4))
    assert a.max() > 900_000  # spans the whole bank, not the first batch
    assert np.array_equal(sample_rows(10, 50, seed=0), np.arange(10))


def test_recall_at_k():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(exact, exact, 3) == 1.0
    assert recall_at_k(np.array([[3, 2, 9], [7, 8, 9]]), exact, 3) == pytest.approx(2 / 6)
    assert recall_at_k(np.array([[1, -1, -1]]), np.array([[1, 2, -1]]), 3) == 0.5
