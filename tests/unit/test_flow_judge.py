import pytest

from fi_resources.judge import FlowJudge
from fi_resources.logic.flow_judge import (
    RUBRIC,
    JudgeOutputError,
    flow_judge_prompt,
    parse_flow_judge_output,
)


def test_prompt_has_every_flow_judge_section():
    p = flow_judge_prompt("What is albedo?", "Albedo is the fraction of light a surface reflects.")
    for tag in ("inputs", "output", "evaluation_criteria", "scoring_rubric"):
        assert f"<{tag}>" in p and f"</{tag}>" in p
    assert p.index("<inputs>") < p.index("What is albedo?") < p.index("</inputs>")
    assert p.index("<output>") < p.index("Albedo is the fraction") < p.index("</output>")
    assert "<feedback>" in p and "<score>" in p
    for k in range(1, 6):
        assert f"Score {k}: {RUBRIC[k]}" in p
    assert "off-topic" in RUBRIC[1] and "no extraneous, vague or" in RUBRIC[5]
    with pytest.raises(ValueError):
        flow_judge_prompt("  ", "x")


def test_parse_accepts_exactly_one_score():
    v = parse_flow_judge_output("<feedback>Direct and complete.</feedback>\n<score>5</score>")
    assert v.score == 5 and v.feedback == "Direct and complete."
    assert parse_flow_judge_output("<score> 3 </score>").score == 3
    assert parse_flow_judge_output("<score>1</score>").feedback == ""


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty_output"),
        ("<feedback>Good.</feedback> I give it a 4.", "no_score_tag"),
        ("<feedback>ok</feedback><score>4", "unclosed_score_tag"),
        ("<score>4</score> ... <score>5</score>", "multiple_scores"),
        ("<score>6</score>", "score_out_of_range"),
        ("<score>0</score>", "score_out_of_range"),
        ("<score>four</score>", "score_not_integer"),
        ("<score>4.5</score>", "score_not_integer"),
    ],
)
def test_parse_rejects_malformed_output_with_a_reason(text, reason):
    with pytest.raises(JudgeOutputError) as err:
        parse_flow_judge_output(text)
    assert err.value.reason == reason


class FakeGenerator:
    def __init__(self, outputs):
        self.outputs = outputs
        self.prompts = None

    def generate(self, prompts, max_new_tokens=48, stop=None):
        self.prompts = list(prompts)
        return self.outputs[: len(prompts)]


def test_flow_judge_scores_and_records_unparseable_output():
    gen = FakeGenerator(["<feedback>Complete.</feedback><score>5</score>", "It is fine, 4/5."])
    judge = FlowJudge(gen, format_prompt=lambda p: f"<chat>{p}</chat>")
    rows = judge.score(["Q1?", "Q2?"], ["A one.", "A two."])
    assert gen.prompts[0].startswith("<chat># GOAL") and "Q1?" in gen.prompts[0]
    assert rows[0]["judge_score"] == 5 and rows[0]["judge_value"] == 5.0 and rows[0]["judge_error"] is None
    assert rows[1]["judge_score"] is None and rows[1]["judge_value"] is None
    assert "no_score_tag" in rows[1]["judge_error"] and rows[1]["judge_feedback"] == "It is fine, 4/5."
    assert judge.score([], []) == []


def test_flow_judge_rejects_a_generator_that_drops_outputs():
    with pytest.raises(RuntimeError):
        FlowJudge(FakeGenerator(["<score>4</score>"])).score(["a?", "b?"], ["x.", "y."])
