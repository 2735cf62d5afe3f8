import pytest

from fi_resources.logic.parsing import OutputError, parse_instantiator_output
from fi_resources.logic.rubric import KEEP_THRESHOLD, is_vague_answer, rubric_score


def test_rubric_anchors():
    assert rubric_score(2.0, 0.05) == 1  # off-topic, whatever the gain
    assert rubric_score(2.0, 0.2) == 2
    assert rubric_score(-0.1, 0.6) == 3
    assert rubric_score(0.1, 0.3) == 4
    assert rubric_score(0.5, 0.6) == 5
    assert rubric_score(0.5, 0.6, "Alien or Aliens may refer to:") == 3
    assert rubric_score(0.5, 0.6, "Albedo is the measure of the diffuse reflection of solar radiation.") == 5
    assert KEEP_THRESHOLD == 4


def test_vague_answers():
    assert is_vague_answer("Writing cursive forms of A")
    assert is_vague_answer("Agricultural sciences include research and development on:")
    assert not is_vague_answer("Albedo depends on the frequency of the radiation.")


def test_instruction_with_leftover_markup_is_rejected():
    out = "Instruction: can you write <excerpt>Writing cursive<...>A</excerpt> in <fi>a language</fi>?\nAnswer: x"
    with pytest.raises(OutputError) as err:
        parse_instantiator_output(out)
    assert err.value.reason == "markup_in_instruction"
