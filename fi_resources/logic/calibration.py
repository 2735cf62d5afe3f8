"""Match-threshold calibration from teacher labels, and the statistics of the retrieval evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Calibration:
    threshold: float | None  # None: not enough labels (see reason)
    f1: float | None
    precision: float | None
    recall: float | None
    n: int
    positives: int
    reason: str  # "ok" or why there is no calibrated threshold


def calibrate_threshold(scores: Sequence[float], labels: Sequence[bool], min_each: int = 3) -> Calibration:
    """The cosine that maximises F1 of "score >= threshold ⇒ compatible" on labelled pairs.

    Candidate thresholds are the observed scores; ties in F1 go to the higher threshold (fewer false
    matches for the same F1). Needs at least ``min_each`` positives and ``min_each`` negatives, since a
    threshold fitted to one class is meaningless.
    """
    if len(scores) != len(labels):
        raise ValueError("one label per score")
    pos = sum(bool(x) for x in labels)
    neg = len(labels) - pos
    if pos < min_each or neg < min_each:
        return Calibration(
            None,
            None,
            None,
            None,
            len(labels),
            pos,
            f"need >= {min_each} positives and negatives, got {pos}/{neg}",
        )
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: -p[0])
    best: tuple[float, float, float, float] | None = None  # (f1, threshold, precision, recall)
    tp = fp = 0
    for i, (score, label) in enumerate(pairs):
        tp += bool(label)
        fp += not label
        if i + 1 < len(pairs) and pairs[i + 1][0] == score:
            continue  # a threshold keeps every pair with this score
        precision, recall = tp / (tp + fp), tp / pos
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, score, precision, recall)
    assert best is not None
    f1, threshold, precision, recall = best
    return Calibration(
        float(threshold), round(f1, 4), round(precision, 4), round(recall, 4), len(labels), pos, "ok"
    )


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation, or None when it is undefined (fewer than 3 points or a constant series)."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / math.sqrt(sxx * syy)


def precision_at_k(compatible_per_doc: Sequence[Sequence[bool]], k: int) -> float | None:
    """Mean over documents of (compatible among the first k retrieved) / k; None with no documents."""
    if not compatible_per_doc:
        return None
    return sum(sum(bool(c) for c in row[:k]) / k for row in compatible_per_doc) / len(compatible_per_doc)


def split_documents(doc_ids: Sequence[str], heldout_fraction: float, seed: int) -> set[str]:
    """Seeded held-out set: round(fraction·n) documents, at least one and never all of them (when there
    are two or more documents and the fraction is above 0)."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must lie in [0, 1), got {heldout_fraction}")
    import random

    ids = sorted(set(doc_ids))
    random.Random(seed).shuffle(ids)
    n = round(len(ids) * heldout_fraction)
    if heldout_fraction > 0 and len(ids) >= 2:
        n = max(1, min(n, len(ids) - 1))
    return set(ids[:n])
