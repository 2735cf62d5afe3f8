"""A labelled check set for a judge: real correct pairs, each twinned with corrupted copies of itself.

A judge is useful if it scores a correct pair above its corrupted twin. Corruptions mirror the failures
the pipeline produces: an answer from elsewhere, an instruction from elsewhere, an answer cut to a
fragment, an off-topic sentence from another document, and repeated or shuffled text.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CORRUPTIONS = (
    "answer_swapped",
    "instruction_swapped",
    "truncated",
    "off_topic_sentence",
    "repeated",
    "shuffled",
)
MIN_ANSWER_WORDS = 6


@dataclass(frozen=True)
class BasePair:
    """A pair taken as correct. `group` says which pairs share a source (a document, or a chatbot topic)."""

    base_id: str
    source: str
    group: str
    instruction: str
    answer: str


@dataclass(frozen=True)
class CheckTwin:
    base_id: str
    source: str
    split: str  # "dev" (tuning allowed) or "test" (reported only)
    corruption: str
    instruction: str
    answer: str
    corrupted_instruction: str
    corrupted_answer: str


def truncate_answer(answer: str) -> str:
    """The first third of the words (at least 2), trailing punctuation removed: an unfinished fragment."""
    words = answer.split()
    keep = max(2, len(words) // 3)
    return " ".join(words[:keep]).rstrip(".,;:!?")


def repeat_answer(answer: str) -> str:
    """The first half of the answer said three times over (repetitive filler)."""
    words = answer.split()
    half = " ".join(words[: max(3, len(words) // 2)])
    return " ".join([half] * 3)


def shuffle_answer(answer: str, rng: random.Random) -> str:
    """The answer's words in a random order (garbled text with the same vocabulary)."""
    words = answer.split()
    for _ in range(10):
        out = words[:]
        rng.shuffle(out)
        if out != words:
            return " ".join(out)
    return " ".join(reversed(words))


def _other(pool: Sequence[BasePair], pair: BasePair, rng: random.Random, field: str) -> str | None:
    same_source = [p for p in pool if p.source == pair.source]
    for candidates in (same_source, list(pool)):
        ok = [
            getattr(p, field)
            for p in candidates
            if p.group != pair.group and getattr(p, field).strip() != getattr(pair, field).strip()
        ]
        if ok:
            return rng.choice(ok)
    return None


def build_check_set(
    pairs: Sequence[BasePair],
    off_topic: Sequence[tuple[str, str]],
    seed: int = 0,
    corruptions: Sequence[str] = CORRUPTIONS,
) -> list[CheckTwin]:
    """Twins for every usable base pair × corruption, each base pair assigned to 'dev' or 'test'.

    `off_topic` holds (group, sentence) candidates: a pair gets a sentence from a different group.
    Splits alternate within each source after a seeded shuffle, so both halves hold both sources.
    """
    unknown = set(corruptions) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(f"unknown corruptions {sorted(unknown)}; choose from {CORRUPTIONS}")
    rng = random.Random(seed)
    usable = [p for p in pairs if len(p.answer.split()) >= MIN_ANSWER_WORDS and p.instruction.strip()]
    if len({p.group for p in usable}) < 2:
        raise ValueError("a check set needs correct pairs from at least two groups (documents/topics)")
    split_of: dict[str, str] = {}
    for source in sorted({p.source for p in usable}):
        ids = sorted({p.base_id for p in usable if p.source == source})
        rng.shuffle(ids)
        split_of.update({b: ("dev", "test")[i % 2] for i, b in enumerate(ids)})
    twins = []
    for pair in usable:
        for kind in corruptions:
            instruction, answer = pair.instruction, pair.answer
            if kind == "answer_swapped":
                answer = _other(usable, pair, rng, "answer")
            elif kind == "instruction_swapped":
                instruction = _other(usable, pair, rng, "instruction")
            elif kind == "truncated":
                answer = truncate_answer(pair.answer)
            elif kind == "off_topic_sentence":
                pool = [s for g, s in off_topic if g != pair.group and s.strip() not in pair.answer]
                answer = rng.choice(pool) if pool else None
            elif kind == "repeated":
                answer = repeat_answer(pair.answer)
            elif kind == "shuffled":
                answer = shuffle_answer(pair.answer, rng)
            if instruction is None or answer is None:
                continue  # no material for this corruption (e.g. no other document)
            twins.append(
                CheckTwin(
                    pair.base_id,
                    pair.source,
                    split_of[pair.base_id],
                    kind,
                    pair.instruction,
                    pair.answer,
                    instruction,
                    answer,
                )  # fmt: skip
            )
    return twins


def twins_as_records(twins: Sequence[CheckTwin]) -> list[dict]:
    return [asdict(t) for t in twins]


@dataclass(frozen=True)
class WinStats:
    twins: int
    wins: int
    ties: int

    @property
    def win_rate(self) -> float:
        return self.wins / self.twins if self.twins else 0.0

    @property
    def tie_rate(self) -> float:
        return self.ties / self.twins if self.twins else 0.0


def win_stats(correct: Sequence[float], corrupted: Sequence[float]) -> WinStats:
    """A win is a strictly higher score for the correct pair; ties and unscored (NaN) twins are not wins."""
    if len(correct) != len(corrupted):
        raise ValueError("correct and corrupted scores differ in length")
    wins = ties = 0
    for a, b in zip(correct, corrupted, strict=True):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            continue
        wins += a > b
        ties += a == b
    return WinStats(len(correct), wins, ties)


def fit_pairwise_weights(
    better: np.ndarray, worse: np.ndarray, l2: float = 0.01, steps: int = 3000, lr: float = 0.5
) -> np.ndarray:
    """Weights w (no intercept) maximising Σ log σ(w·(better − worse)) − l2·|w|² (a RankNet on features).

    Features should be standardised first; the intercept does not affect pairwise order.
    """
    diff = np.asarray(better, dtype=np.float64) - np.asarray(worse, dtype=np.float64)
    if diff.ndim != 2 or not len(diff):
        raise ValueError("need a non-empty 2-D array of feature differences")
    w = np.zeros(diff.shape[1])
    for _ in range(steps):
        margin = diff @ w
        grad = -(diff * (1 - 1 / (1 + np.exp(-margin)))[:, None]).mean(0) + 2 * l2 * w
        w -= lr * grad
    return w


_WORD = re.compile(r"\w+")


def repetition_share(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 for ordinary prose, → 1 for loops)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)
