from collections import Counter

import pytest

from fi_resources.logic.sampling import DEFAULT_COMPLEXITY_DISTRIBUTION, complexity_weighted_sample
from fi_resources.logic.templates import template_skeleton


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


# ---- the per-embedding matching rule -----------------------------------------------------------
from fi_resources.logic.sampling import embedding_name, match_per_embedding  # noqa: E402

SLOTS = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 1}


def test_one_template_per_embedding_no_duplicates():
    hits = [[("a", 0.9), ("b", 0.3)], [("a", 0.9)], [("a", 0.95), ("c", 0.7)], [("d", 0.5)]]
    out = match_per_embedding(hits, SLOTS, {1: 1, 2: 1, 3: 1}, threshold=0.6, seed=0)
    ids = [t for _, t, _ in out]
    assert len(ids) == len(set(ids))
    assert [e for e, _, _ in out] == sorted({e for e, _, _ in out})  # at most one per embedding
    assert 1 not in [e for e, _, _ in out]  # local 1's only candidate was already taken
    assert 3 not in [e for e, _, _ in out]  # below the threshold
    assert all(c >= 0.6 for _, _, c in out)
    assert [embedding_name(e) for e in (0, 1, 5)] == ["global", "local_1", "local_5"]


def test_matching_is_deterministic_and_capped():
    hits = [[("a", 0.9), ("b", 0.8), ("c", 0.85), ("d", 0.7), ("e", 0.9)]] * 6
    a = match_per_embedding(hits, SLOTS, {1: 1, 2: 1, 3: 1}, 0.0, seed=3)
    assert a == match_per_embedding(hits, SLOTS, {1: 1, 2: 1, 3: 1}, 0.0, seed=3)
    assert len(a) == 5  # five distinct templates for six embeddings
    assert len(match_per_embedding(hits, SLOTS, {1: 1, 2: 1, 3: 1}, 0.0, seed=3, max_matches=2)) == 2


def test_matching_follows_the_target_complexity_mix():
    # Per embedding: many 1-slot candidates, one 3-slot. Target 50/50 → about half the picks are 3-slot.
    slots = {f"s{i}": 1 for i in range(20)} | {f"x{e}": 3 for e in range(6)}
    n3 = total = 0
    for doc in range(300):
        hits = [[(f"s{i}", 0.9) for i in range(20)] + [(f"x{e}", 0.9)] for e in range(6)]
        out = match_per_embedding(hits, slots, {1: 0.5, 3: 0.5}, 0.5, seed=doc)
        n3 += sum(slots[t] == 3 for _, t, _ in out)
        total += len(out)
    assert 0.4 < n3 / total < 0.6


def test_unknown_template_raises():
    import pytest

    with pytest.raises(KeyError):
        match_per_embedding([[("zz", 0.9)]], SLOTS, {1: 1}, 0.0, seed=0)


def test_top_per_embedding_round_robin_without_duplicates():
    from fi_resources.logic.sampling import top_per_embedding

    hits = [[("a", 0.9), ("b", 0.8)], [("a", 0.95), ("c", 0.5)], [("b", 0.7)]]
    assert top_per_embedding(hits, 6) == [(0, "a", 0.9), (1, "c", 0.5), (2, "b", 0.7)]
    assert top_per_embedding(hits, 2) == [(0, "a", 0.9), (1, "c", 0.5)]
    assert top_per_embedding([[("a", 0.9), ("b", 0.8), ("c", 0.1)]], 3) == [
        (0, "a", 0.9), (0, "b", 0.8), (0, "c", 0.1)
    ]  # fmt: skip


def test_templates_with_one_skeleton_are_one_template_for_a_passage():
    hits = [[("nation", 0.9), ("device", 0.8), ("capital", 0.7)]] * 3
    n_slots = {"nation": 1, "device": 1, "capital": 1}
    skeletons = {
        t: template_skeleton(x)
        for t, x in {
            "nation": "What is <fi>a nation</fi>?",
            "device": "What is a <fi>a device</fi>?",
            "capital": "What is the capital of <fi>a country</fi>?",
        }.items()
    }
    assert skeletons["nation"] == skeletons["device"] != skeletons["capital"]
    for seed in range(10):
        plain = [t for _, t, _ in match_per_embedding(hits, n_slots, {1: 1.0}, 0.1, seed)]
        assert len(plain) == 3
        deduped = [
            t for _, t, _ in match_per_embedding(hits, n_slots, {1: 1.0}, 0.1, seed, same_as=skeletons)
        ]
        assert len(deduped) == 2 and "capital" in deduped
