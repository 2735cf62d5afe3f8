"""The embedded judge's 5-point rubric, mapped from signals a 135M model can actually give.

Asked Yes/No, the small model cannot tell right answers from wrong (offline-assets.md §8), so the
embedded judge scores with two measured signals instead:
- instruction gain: mean log p(answer | instruction) − mean log p(answer) under the LM: how much the
  instruction helps predict the answer (an answer that does not address it gains nothing);
- relevance: cosine similarity of instruction and answer embeddings.
The rubric follows the paper's anchors: 1 = off-topic, 5 = fully addresses the instruction.
"""

from __future__ import annotations

KEEP_THRESHOLD = 4


def is_vague_answer(answer: str, min_words: int = 6) -> bool:
    """Too short to answer anything, or a list heading ("Alien or Aliens may refer to:")."""
    text = answer.strip()
    return len(text.split()) < min_words or text.endswith(":")


def rubric_score(instruction_gain: float, relevance: float, answer: str = "") -> int:
    if relevance < 0.10:
        return 1  # irrelevant or off-topic
    if relevance < 0.25:
        return 2  # touches the topic but does not address the instruction
    if instruction_gain <= 0.0:
        return 3  # on topic, but the instruction does not make this answer more likely
    if answer and is_vague_answer(answer):
        return 3  # on topic, but vague or incomplete (the rubric's "no vague content" for 4 and 5)
    if instruction_gain > 0.25 and relevance >= 0.45:
        return 5  # addresses the instruction directly
    return 4


def rubric_reason(score: int) -> str:
    return {
        1: "off-topic (relevance < 0.10)",
        2: "weakly related (relevance < 0.25)",
        3: "on topic, but no instruction gain or a vague answer",
        4: "addresses the instruction",
        5: "directly addresses the instruction (gain > 0.25, relevance ≥ 0.45)",
    }[score]
