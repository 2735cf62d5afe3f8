"""Complexity-weighted sampling of retrieved templates."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence

# Placeholder prior over the number of slots per template; replace it with the slot-count
# distribution measured on real user queries once those counts exist.
DEFAULT_COMPLEXITY_DISTRIBUTION: dict[int, float] = {1: 0.45, 2: 0.30, 3: 0.15, 4: 0.06, 5: 0.04}


def complexity_weighted_sample(
    candidates: Sequence[tuple[str, float, int]],
    k: int,
    target_distribution: Mapping[int, float],
    threshold: float,
    seed: int,
) -> list[str]:
    """Sample up to ``k`` distinct template ids so the slot-count mix follows ``target_distribution``.

    ``candidates`` are ``(template_id, cosine, n_slots)``; only those with cosine >= ``threshold`` are
    kept (the first entry of a repeated id wins). Each has weight target[n] / (passing candidates with
    n slots); n above the largest key uses that key's weight, a missing key or weight 0 excludes.
    Draws are weighted without replacement and deterministic for ``seed``.
    """
    if k <= 0 or not target_distribution:
        return []
    if any(weight < 0 for weight in target_distribution.values()):
        raise ValueError("target_distribution weights must be non-negative")
    max_key = max(target_distribution)

    passing: dict[str, int] = {}
    for template_id, cosine, n_slots in candidates:
        if cosine >= threshold and template_id not in passing:
            passing[template_id] = min(n_slots, max_key)
    per_class = Counter(passing.values())

    rng = random.Random(seed)
    keyed: list[tuple[float, str]] = []
    for template_id, n_slots in passing.items():
        u = 1.0 - rng.random()  # in (0, 1], so the log is defined
        weight = target_distribution.get(n_slots, 0.0) / per_class[n_slots]
        if weight > 0:
            # Efraimidis-Spirakis: the k largest log(u)/w are a weighted sample without replacement.
            keyed.append((math.log(u) / weight, template_id))
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [template_id for _, template_id in keyed[:k]]


def embedding_name(index: int) -> str:
    """0 → 'global', k → 'local_k' (the `embedding` column of document_matches)."""
    return "global" if index == 0 else f"local_{index}"


def match_per_embedding(
    hits: Sequence[Sequence[tuple[str, float]]],
    n_slots: Mapping[str, int],
    target_distribution: Mapping[int, float],
    threshold: float,
    seed: int,
    max_matches: int | None = None,
    same_as: Mapping[str, str] | None = None,
) -> list[tuple[int, str, float]]:
    """The paper's matching rule for one document: one template per embedding, no duplicates.

    ``hits[e]`` are the index hits ``(template_id, cosine)`` of embedding e (0 = global, 1..K = locals).
    For each embedding in order, the candidates with cosine >= ``threshold`` not yet chosen by an earlier
    embedding are sampled once with complexity weights (see ``complexity_weighted_sample``), so across
    documents the `<fi>`-count mix of chosen templates follows ``target_distribution`` wherever the
    candidates allow. Returns ``(embedding index, template_id, cosine)``, at most ``max_matches`` (default
    one per embedding), deterministic for ``seed``. Unknown template ids raise KeyError. With ``same_as``
    (template id → key), templates sharing a key count as duplicates too.
    """
    key = (lambda t: same_as.get(t, t)) if same_as else (lambda t: t)
    limit = len(hits) if max_matches is None else min(max_matches, len(hits))
    chosen: list[tuple[int, str, float]] = []
    taken: set[str] = set()
    for e, found in enumerate(hits):
        if len(chosen) >= limit:
            break
        cosine = {}
        for template_id, score in found:
            cosine.setdefault(template_id, score)
        candidates = [(t, s, int(n_slots[t])) for t, s in cosine.items() if key(t) not in taken]
        pick = complexity_weighted_sample(
            candidates,
            k=1,
            target_distribution=target_distribution,
            threshold=threshold,
            seed=seed * 1009 + e,
        )
        if pick:
            taken.add(key(pick[0]))
            chosen.append((e, pick[0], cosine[pick[0]]))
    return chosen


def top_per_embedding(
    hits: Sequence[Sequence[tuple[str, float]]], limit: int
) -> list[tuple[int, str, float]]:
    """Deterministic counterpart of ``match_per_embedding`` for evaluation: each embedding in order takes
    its highest-cosine template not taken yet; cycles over the embeddings until ``limit`` are chosen or the
    hits run out. Returns ``(embedding index, template_id, cosine)``."""
    chosen: list[tuple[int, str, float]] = []
    taken: set[str] = set()
    cursors = [0] * len(hits)
    progress = True
    while len(chosen) < limit and progress:
        progress = False
        for e, found in enumerate(hits):
            while cursors[e] < len(found) and found[cursors[e]][0] in taken:
                cursors[e] += 1
            if cursors[e] < len(found) and len(chosen) < limit:
                template_id, score = found[cursors[e]]
                taken.add(template_id)
                chosen.append((e, template_id, score))
                progress = True
    return chosen


def incompatible_pairs(pairs: Sequence[tuple[str, str]], fraction: float, seed: int) -> list[tuple[str, str]]:
    """Deliberately mismatched (template_id, doc_id) pairs for ~`fraction` null targets (paper: ~5 %)."""
    rng = random.Random(seed)
    templates = sorted({t for t, _ in pairs})
    docs = sorted({d for _, d in pairs})
    existing = set(pairs)
    want = max(1, round(len(pairs) * fraction)) if pairs else 0
    out: list[tuple[str, str]] = []
    for _ in range(want * 20):
        if len(out) >= want or len(templates) < 2:
            break
        pair = (rng.choice(templates), rng.choice(docs))
        if pair not in existing and pair not in out:
            out.append(pair)
    return out
