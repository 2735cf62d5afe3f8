import math

import pytest

from fi_resources.logic.parsing import OutputError, parse_instantiator_output
from fi_resources.logic.rubric import (
    OFF_TOPIC_RELEVANCE,
    is_fragment,
    is_vague_answer,
    judge_pair,
    score_from_value,
)
from fi_resources.settings import JudgeSettings

GOOD = "Albedo is the measure of the diffuse reflection of solar radiation."


def test_score_is_the_rounded_value():
    values = (0.5, 1.0, 1.49, 3.49, 3.5, 4.49, 4.5, 7.0)
    assert [score_from_value(v) for v in values] == [1, 1, 1, 3, 4, 4, 5, 5]
    assert JudgeSettings().keep_score == 4  # the paper's keep rule: 4 of 5


def test_value_grows_with_gain_and_relevance():
    low = judge_pair(0.0, 0.3, -3.0, GOOD)
    assert judge_pair(10.0, 0.3, -3.0, GOOD).value > low.value
    assert judge_pair(0.0, 0.7, -3.0, GOOD).value > low.value
    assert 1.0 < low.value < 5.0 and low.score == math.floor(low.value + 0.5)


def test_rubric_anchors_cap_the_score():
    assert judge_pair(5.0, OFF_TOPIC_RELEVANCE - 0.01, 0.0, GOOD).score == 1  # off-topic, whatever else
    strong = judge_pair(5.0, 0.9, 0.0, GOOD)
    assert strong.score == 5
    vague = judge_pair(5.0, 0.9, 0.0, "Alien or Aliens may refer to:")
    assert vague.score == 3 and "vague" in vague.reason
    fragment = judge_pair(5.0, 0.9, 0.0, "Albedo is the measure of the diffuse reflection")
    assert fragment.score == 3 and "fragment" in fragment.reason
    loop = judge_pair(5.0, 0.9, 0.0, " ".join(["Albedo is the measure of reflection."] * 3))
    assert loop.score == 3 and "repetitive" in loop.reason
    with pytest.raises(ValueError):
        judge_pair(float("-inf"), 0.5, -1.0, GOOD)


def test_vague_and_fragment_answers():
    assert is_vague_answer("Writing cursive forms of A")
    assert is_vague_answer("Agricultural sciences include research and development on:")
    assert not is_vague_answer("Albedo depends on the frequency of the radiation.")
    assert is_fragment("Albedo depends on the frequency of")
    assert not is_fragment("It is called “albedo.”")
    assert not is_fragment("def f():\n    return 1\n```")


def test_instruction_with_leftover_markup_is_rejected():
    out = "Instruction: can you write <excerpt>Writing cursive<...>A</excerpt> in <fi>a language</fi>?\nAnswer: x"
    with pytest.raises(OutputError) as err:
        parse_instantiator_output(out)
    assert err.value.reason == "markup_in_instruction"
