import pytest

from fi_resources.logic.calibration import calibrate_threshold, pearson, precision_at_k


def test_threshold_maximises_f1():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    labels = [True, True, True, False, True, False, False]
    cal = calibrate_threshold(scores, labels)
    # At 0.5: tp 4, fp 1 → P 0.8, R 1 → F1 0.889 (best); at 0.7: P 1, R 0.75 → F1 0.857.
    assert cal.threshold == 0.5 and cal.reason == "ok"
    assert cal.f1 == pytest.approx(0.8889, abs=1e-4) and cal.recall == 1.0


def test_ties_in_score_are_one_threshold_and_ties_in_f1_prefer_higher():
    cal = calibrate_threshold([0.9, 0.5, 0.5, 0.1, 0.1, 0.1], [True, True, False, False, False, True])
    assert cal.threshold in (0.9, 0.5)
    # F1 at 0.9: P 1, R 1/3 → 0.5; at 0.5: P 2/3, R 2/3 → 0.667 → 0.5 wins.
    assert cal.threshold == 0.5


def test_too_few_labels_gives_no_threshold_with_reason():
    cal = calibrate_threshold([0.9, 0.8, 0.7], [True, True, True])
    assert cal.threshold is None and "negatives" in cal.reason
    with pytest.raises(ValueError):
        calibrate_threshold([0.1], [True, False])


def test_pearson_and_precision():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None and pearson([1, 1, 1], [1, 2, 3]) is None
    assert precision_at_k([[True, False], [True, True, True]], 2) == pytest.approx(0.75)
    assert precision_at_k([], 6) is None


def test_split_documents_is_seeded_and_never_empty_or_total():
    from fi_resources.logic.calibration import split_documents

    ids = [f"d{i}" for i in range(20)]
    a = split_documents(ids, 0.25, seed=1)
    assert len(a) == 5 and a == split_documents(list(reversed(ids)), 0.25, seed=1)
    assert a != split_documents(ids, 0.25, seed=2)
    assert len(split_documents(["x", "y"], 0.01, 0)) == 1 and len(split_documents(["x", "y"], 0.9, 0)) == 1
    assert split_documents(ids, 0.0, 0) == set()
    with pytest.raises(ValueError):
        split_documents(ids, 1.0, 0)
