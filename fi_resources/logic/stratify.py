"""Balanced selection for the instantiator's second distillation round (paper §3: the round-1 student's
judge-filtered outputs are balanced for answer length, complexity, i.e. the number of `<fi>` variables, and
topics such as math and code, found by keywords). Pure: no Dagster, no model."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Hashable, Sequence

# Answer length in words: short < 40 <= medium < 120 <= long. The instantiator writes at most 80 tokens of
# markup, so a long answer is one whose excerpts copy a long span.
LENGTH_BOUNDS = (40, 120)

_MATH = re.compile(
    r"\b(?:equations?|theorems?|integrals?|derivatives?|probabilit(?:y|ies)|calculat\w*|solve|formulas?|"
    r"algebra\w*|geometr\w*|arithmetic|fractions?|square roots?|prime numbers?|mathemat\w*)\b|"
    r"\d\s*[+*^=]\s*\d",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"\b(?:coding|programming|python|javascript|typescript|sql|html|css|compil(?:e|er|ers|ing)|source code|"
    r"regex|regular expressions?|api|debug(?:ging)?|subroutines?)\b|c\+\+|\bdef\s+\w+\(|=>|\w\(\)",
    re.IGNORECASE,
)


def topic(instruction: str, answer: str) -> str:
    """The topic, "code", "math" or "other", by keywords in the instruction and its answer (code wins a tie: a program
    that computes a sum is about code)."""
    text = f"{instruction}\n{answer}"
    if _CODE.search(text):
        return "code"
    if _MATH.search(text):
        return "math"
    return "other"


def length_bucket(answer: str) -> str:
    """The length, "short", "medium" or "long", by the answer's word count (LENGTH_BOUNDS)."""
    words = len(answer.split())
    return "short" if words < LENGTH_BOUNDS[0] else "medium" if words < LENGTH_BOUNDS[1] else "long"


def complexity_bucket(n_slots: int) -> str:
    """The template's `<fi>` count as "0", "1", "2" or "3+"."""
    return str(n_slots) if n_slots < 3 else "3+"


def stratum(instruction: str, answer: str, n_slots: int) -> str:
    """The stratum a pair is balanced in: length/complexity/topic, e.g. "short/1/other"."""
    return f"{length_bucket(answer)}/{complexity_bucket(n_slots)}/{topic(instruction, answer)}"


def balanced_sample(strata: Sequence[Hashable], n: int, seed: int) -> list[int]:
    """Indices of min(n, len(strata)) items spread as evenly as the strata allow: every stratum gives one
    item per round until `n` are chosen, so a small stratum is taken whole and the large ones share what is
    left equally. Items within a stratum, and the strata's order in the last round, are drawn with `seed`.
    The indices come back in ascending order."""
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    rng = random.Random(seed)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(strata):
        groups[key].append(i)
    queues = [groups[k] for k in sorted(groups, key=str)]
    for q in queues:
        rng.shuffle(q)
    rng.shuffle(queues)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen)
