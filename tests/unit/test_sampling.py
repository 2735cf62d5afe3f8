from collections import Counter

import pytest

from fi_resources.logic.sampling import DEFAULT_COMPLEXITY_DISTRIBUTION, complexity_weighted_sample


def _pool():
    # Slot counts are very unbalanced in the pool: 1-slot templates dominate.
    pool = [(f"one-{i}", 0.9, 1) for i in range(3000)]
    pool += [(f"two-{i}", 0.8, 2) for i in range(600)]
    pool += [(f"three-{i}", 0.7, 3) for i in range(300)]
    pool += [(f"many-{i}", 0.7, 7) for i in range(300)]  # above the max key: uses key 4's weight
    pool += [(f"low-{i}", 0.1, 2) for i in range(3000)]  # below the threshold
    return pool


TARGET = {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1}


def test_deterministic_and_distinct():
    first = complexity_weighted_sample(_pool(), 200, TARGET, 0.5, seed=1)
    assert first == complexity_weighted_sample(_pool(), 200, TARGET, 0.5, seed=1)
    assert first != complexity_weighted_sample(_pool(), 200, TARGET, 0.5, seed=2)
    assert len(first) == len(set(first)) == 200


def test_follows_target_distribution():
    counts = Counter()
    for seed in range(10):
        for template_id in complexity_weighted_sample(_pool(), 100, TARGET, 0.5, seed=seed):
            counts[template_id.split("-")[0]] += 1
    total = sum(counts.values())
    assert counts["low"] == 0
    for name, share in (("one", 0.4), ("two", 0.3), ("three", 0.2), ("many", 0.1)):
        assert counts[name] / total == pytest.approx(share, abs=0.05), counts


def test_zero_weight_and_missing_keys_exclude():
    pool = [("a", 1.0, 1), ("b", 1.0, 2), ("c", 1.0, 3)]
    assert sorted(complexity_weighted_sample(pool, 5, {1: 1.0, 2: 0.0, 3: 1.0}, 0.0, 0)) == ["a", "c"]
    # A slot count below the largest key but missing from the target is excluded too.
    assert sorted(complexity_weighted_sample(pool, 5, {1: 1.0, 3: 1.0}, 0.0, 0)) == ["a", "c"]


def test_fewer_than_k_and_edge_cases():
    pool = [("a", 0.9, 1), ("a", 0.95, 1), ("b", 0.5, 2), ("c", 0.49, 1)]
    assert sorted(complexity_weighted_sample(pool, 10, DEFAULT_COMPLEXITY_DISTRIBUTION, 0.5, 0)) == ["a", "b"]
    assert complexity_weighted_sample(pool, 0, DEFAULT_COMPLEXITY_DISTRIBUTION, 0.5, 0) == []
    assert complexity_weighted_sample([], 3, DEFAULT_COMPLEXITY_DISTRIBUTION, 0.5, 0) == []
    with pytest.raises(ValueError):
        complexity_weighted_sample(pool, 1, {1: -1.0}, 0.5, 0)


def test_default_distribution_is_a_distribution():
    assert sum(DEFAULT_COMPLEXITY_DISTRIBUTION.values()) == pytest.approx(1.0)
