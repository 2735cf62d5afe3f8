import random

import numpy as np
import pandas as pd
import pytest

from fi_resources.logic.judge_check import (
    CORRUPTIONS,
    BasePair,
    build_check_set,
    fit_pairwise_weights,
    repeat_answer,
    repetition_share,
    shuffle_answer,
    truncate_answer,
    win_stats,
)
from fi_resources.stages.judging import check_material

PAIRS = [
    BasePair("a", "silver", "doc1", "What is albedo?", "Albedo is the fraction of sunlight that a surface reflects."),
    BasePair("b", "silver", "doc2", "Who was Ayn Rand?", "Ayn Rand was a Russian-born American novelist and philosopher."),
    BasePair("c", "chat", "t1", "What is a CPU?", "A CPU is the part of a computer that executes program instructions."),
    BasePair("d", "chat", "t2", "What is AI?", "Artificial intelligence is the study of machines that can think and learn."),
    BasePair("e", "chat", "t3", "Hi?", "Hello."),  # too short: not a usable base pair
]  # fmt: skip
OFF = [
    ("doc1", "Albedo depends on the frequency of the radiation."),
    ("doc3", "Algeria is a country in Africa."),
]


def test_every_usable_pair_gets_every_corruption():
    twins = build_check_set(PAIRS, OFF, seed=1)
    assert {t.base_id for t in twins} == {"a", "b", "c", "d"}
    assert len(twins) == 4 * len(CORRUPTIONS)
    by = {(t.base_id, t.corruption): t for t in twins}
    for t in twins:
        assert (t.corrupted_instruction, t.corrupted_answer) != (t.instruction, t.answer)
    assert by[("a", "answer_swapped")].corrupted_answer == PAIRS[1].answer  # same source, other document
    assert by[("a", "instruction_swapped")].corrupted_answer == PAIRS[0].answer
    assert by[("a", "off_topic_sentence")].corrupted_answer == OFF[1][1]  # never its own document's
    assert by[("c", "truncated")].corrupted_answer == "A CPU is the"  # 13 words → 4
    # Both splits, and a base pair's twins all in one split.
    splits = {t.base_id: t.split for t in twins}
    assert set(splits.values()) == {"dev", "test"}
    assert all(t.split == splits[t.base_id] for t in twins)
    assert build_check_set(PAIRS, OFF, seed=1) == twins


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="unknown corruptions"):
        build_check_set(PAIRS, OFF, corruptions=["typo"])
    with pytest.raises(ValueError, match="two groups"):
        build_check_set(PAIRS[:1], OFF)


def test_text_corruptions():
    text = "one two three four five six seven eight nine."
    assert truncate_answer(text) == "one two three"
    assert repeat_answer(text).count("one two three four") == 3
    shuffled = shuffle_answer(text, random.Random(0))
    assert shuffled != text and sorted(shuffled.split()) == sorted(text.split())
    assert repetition_share(text) == 0.0
    assert repetition_share(repeat_answer(text)) > 0.5
    assert repetition_share("hi") == 0.0


def test_win_stats_counts_ties_and_unscored_as_non_wins():
    s = win_stats([3.0, 2.0, 4.0, float("nan")], [1.0, 2.0, 5.0, 1.0])
    assert (s.twins, s.wins, s.ties) == (4, 1, 1)
    assert s.win_rate == 0.25 and s.tie_rate == 0.25
    with pytest.raises(ValueError):
        win_stats([1.0], [])


def test_pairwise_fit_finds_the_informative_feature():
    rng = np.random.default_rng(0)
    better = rng.normal(size=(200, 2)) + [1.0, 0.0]
    worse = rng.normal(size=(200, 2))
    w = fit_pairwise_weights(better, worse)
    assert w[0] > 0.5 and abs(w[1]) < 0.3
    with pytest.raises(ValueError):
        fit_pairwise_weights(np.zeros((0, 2)), np.zeros((0, 2)))


def test_the_real_qa_drawn_do_not_depend_on_the_silver_pool():
    docs = pd.DataFrame(
        {"doc_id": ["d1"], "text": ["Albedo is the measure of the diffuse reflection of sunlight."]}
    )
    target = "Instruction: What is albedo?\nAnswer: <excerpt>Albedo is the<...>of sunlight.</excerpt>"
    qa = [(f"Question number {k}?", f"This is the answer number {k}, in several words.") for k in range(40)]

    def drawn(n_silver: int) -> list[str]:
        silver = pd.DataFrame(
            {"doc_id": ["d1"] * n_silver, "template_id": [f"t{k}" for k in range(n_silver)],
             "target": [target] * n_silver, "reason": ["ok"] * n_silver}
        )  # fmt: skip
        base, _ = check_material(silver, docs, qa, pairs_per_source=4, seed=0)
        return [p.base_id for p in base if p.source == "chatterbot"]

    assert len(drawn(0)) == 4 and drawn(0) == drawn(1) == drawn(9)
