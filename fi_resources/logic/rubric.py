"""The embedded judge's 5-point rubric, mapped from signals a 135M model and MiniLM can actually give.

Asked to follow a rubric, the small model cannot (offline-assets.md §8), so the embedded judge scores a
pair from measured signals instead:
- total gain: log p(answer | instruction) − log p(answer) summed over the answer's tokens under the LM
  (pointwise mutual information: an answer that does not address the instruction gains nothing from it);
- relevance: cosine of the instruction and answer embeddings (MiniLM);
- fluency: mean log p(answer) per token without the instruction (garbled text is improbable);
- text flags: repeated n-grams, an unfinished fragment, a too-short or heading-like answer.
A linear combination (weights fitted pairwise on the development half of the judge check set, see
bench/tune_judge.py) gives a continuous value in (1, 5); the Likert score is that value rounded. The
paper's anchors are hard caps: off-topic → 1; vague, fragmentary or repetitive → at most 3 (the rubric
reserves 4 and 5 for answers with no vague or repetitive content). When the judge knows the template, two
more anchors apply (`template_caps`): an instruction no user could ask → at most 2, an answer that never
mentions what is asked → at most 3. Audit labels, not these signals, say how honest the result is
(audit/RUBRIC.md, the judge_audit asset).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fi_resources.logic.excerpts import FINISHED_ENDINGS
from fi_resources.logic.judge_check import repetition_share

OFF_TOPIC_RELEVANCE = 0.10
MAX_REPETITION = 0.2
MIN_WORDS = 6

# Fitted on the dev half of the demo's judge check set (bench/tune_judge.py, seed 0, 96 dev twins): weights by
# a pairwise logistic fit; the bias (it sets the pass rate) maximises balanced keep accuracy of dev correct vs
# corrupted pairs; the flag penalty is the best dev win rate of {0, 0.5, 1, 2, 4}. Held-out (test) win rate
# with these values: 0.885 of 96 twins; pass rate on the demo's 60 real pairs: 56.7 % (paper: ~58 %).
WEIGHTS = {"total_gain": 0.064, "relevance": 9.416, "fluency": 0.388}
BIAS = -1.25
FLAG_PENALTY = 1.0  # subtracted from the linear quality per text flag (vague, fragment, repetitive)

_END = re.compile(f"[{re.escape(FINISHED_ENDINGS)}]\\s*$")


def is_vague_answer(answer: str, min_words: int = MIN_WORDS) -> bool:
    """Too short to answer anything, or a list heading ("Alien or Aliens may refer to:")."""
    text = answer.strip()
    return len(text.split()) < min_words or text.endswith(":")


def is_fragment(answer: str) -> bool:
    """Stops mid-sentence: no closing punctuation (code blocks count as finished)."""
    return not _END.search(answer.strip())


@dataclass(frozen=True)
class Judgement:
    value: float  # continuous quality in (1, 5); the score is its rounded value
    score: int
    reason: str


def linear_quality(total_gain: float, relevance: float, fluency: float) -> float:
    return (
        BIAS
        + WEIGHTS["total_gain"] * total_gain
        + WEIGHTS["relevance"] * relevance
        + WEIGHTS["fluency"] * fluency
    )


@dataclass(frozen=True)
class TemplateSignals:
    """What the judge can check when it knows the template the instruction was filled from."""

    unaskable: str | None = None  # `question_form_reason` of the template, or "not_filled_from_template"
    asked_coverage: float | None = None  # share of the asked words (templates.asked_words) the answer has
    answer_kind: str | None = None  # `answer_kind.question_kind` of the instruction
    answer_mismatch: str | None = None  # `answer_kind.answer_kind_mismatch`: the answer lacks the asked shape
    slot_type_mismatch: str | None = None  # `slot_types.type_mismatch`: a slot holds the wrong kind of thing


MIN_ASKED_COVERAGE = 0.5


def template_caps(signals: TemplateSignals) -> tuple[float, str] | None:
    """The rubric's anchors for what the template reveals: a question no user could ask ("What is the
    astronomer's official?") is not a usable instruction (≤ 2); an answer that never mentions what is asked
    ("How many sides does <a tennis player> have?" → his titles) answers only the topic (≤ 3), and so does
    one without the shape its question asks for ("What is Australia?" → "Australia has escaped with a
    draw…"), and so does a question whose slot holds the wrong kind of thing ("Who invented <a computer>?"
    → "animation"). For an open question (no shape to check), only an answer that mentions everything asked can
    earn a 4: on the audit set's tune split, open questions were the bulk of the judge's false keeps."""
    if signals.unaskable:
        return 2.499, f"unaskable instruction ({signals.unaskable})"
    if signals.asked_coverage is not None and signals.asked_coverage < MIN_ASKED_COVERAGE:
        return 3.499, f"answer does not address what is asked (coverage {signals.asked_coverage:.2f})"
    if signals.answer_mismatch:
        return 3.499, f"answer does not respond: {signals.answer_mismatch}"
    if signals.slot_type_mismatch:
        return 3.499, f"slot filled with the wrong kind of thing: {signals.slot_type_mismatch}"
    if signals.answer_kind == "open" and signals.asked_coverage is not None and signals.asked_coverage < 1.0:
        return (
            3.499,
            f"open question, answer mentions only part of what is asked ({signals.asked_coverage:.2f})",
        )
    return None


def judge_pair(
    total_gain: float,
    relevance: float,
    fluency: float,
    answer: str,
    template: TemplateSignals | None = None,
) -> Judgement:
    """Continuous value and 1–5 score of one pair from its measured signals (see module docstring)."""
    gain = total_gain
    for name, v in (("total_gain", gain), ("relevance", relevance), ("fluency", fluency)):
        if not math.isfinite(v):
            raise ValueError(f"judge signal {name} is {v}; an empty answer cannot be judged")
    q = linear_quality(gain, relevance, fluency)
    reason = f"quality {q:+.2f} (gain {gain:+.2f}, relevance {relevance:.2f}, fluency {fluency:.2f})"
    flags = []
    if is_vague_answer(answer):
        flags.append(f"vague: under {MIN_WORDS} words or a list heading")
    if is_fragment(answer):
        flags.append("fragment: ends mid-sentence")
    rep = repetition_share(answer)
    if rep > MAX_REPETITION:
        flags.append(f"repetitive: {rep:.0%} repeated 3-grams")
    # A flagged answer also ranks below its unflagged equal, not just under the cap.
    q -= FLAG_PENALTY * len(flags)
    value = 1.0 + 4.0 / (1.0 + math.exp(-q))
    if relevance < OFF_TOPIC_RELEVANCE:
        value, reason = min(value, 1.499), f"off-topic: relevance {relevance:.2f} < {OFF_TOPIC_RELEVANCE}"
    elif flags:
        value, reason = min(value, 3.499), "; ".join(flags) + f"; {reason}"
    cap = template_caps(template) if template else None
    if cap and value > cap[0]:
        value, reason = cap[0], f"{cap[1]}; {reason}"
    return Judgement(value, score_from_value(value), reason)


def score_from_value(value: float) -> int:
    """Round half up to the nearest Likert point: score ≥ 4 ⇔ value ≥ 3.5."""
    return max(1, min(5, int(math.floor(value + 0.5))))
