"""The paper's judge prompt (Flow-Judge-v0.1 format, 5-point Likert) and a strict parser of its output.

Flow-Judge-v0.1 reads `<inputs>`, `<output>`, `<evaluation_criteria>` and `<scoring_rubric>` sections and
answers `<feedback>…</feedback>` then `<score>N</score>` (paper.md §4). The paper's rubric text is not
public (App. C/E); the anchors it states are 1 = irrelevant/off-topic and 5 = addresses the query
completely with no extraneous, vague or repetitive content. Scores 2–4 below are our wording between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FLOW_JUDGE_VERSION = "flow-judge-prompt/v1"

EVALUATION_CRITERIA = (
    "Does the output respond to the user's instruction: is it relevant to what was asked, does it answer "
    "it completely, and is it free of extraneous, vague or repetitive content?"
)

RUBRIC: dict[int, str] = {
    1: "The output is irrelevant to the instruction or off-topic; it does not address the request at all.",
    2: "The output touches the topic of the instruction but does not answer it; the answer to what was "
    "asked is missing or wrong.",
    3: "The output partially answers the instruction, but it is incomplete, vague, or mostly made of "
    "content that was not asked for.",
    4: "The output answers the instruction; it may leave out a minor detail or include a little "
    "unnecessary, vague or repetitive content.",
    5: "The output addresses the instruction completely and directly, with no extraneous, vague or "
    "repetitive content.",
}


def rubric_text(rubric: dict[int, str] = RUBRIC) -> str:
    return "\n".join(f"- Score {k}: {v}" for k, v in sorted(rubric.items()))


def flow_judge_prompt(
    instruction: str, answer: str, criteria: str = EVALUATION_CRITERIA, rubric: dict[int, str] = RUBRIC
) -> str:
    """The user message for Flow-Judge: the instruction is the task's input, the answer its output."""
    if not instruction.strip():
        raise ValueError("flow_judge_prompt: the instruction is empty")
    return (
        "# GOAL\n"
        "Your job is to evaluate a task carried out by an AI system powered by a large language model.\n"
        "You will be provided with the inputs and output of the task, as well as the evaluation criteria "
        "and scoring rubric. Evaluate the output of the AI system based on the evaluation criteria and "
        "scoring rubric provided.\n\n"
        "# INPUT\nBelow are the inputs required for performing the task:\n"
        f"<inputs>\n<instruction>\n{instruction.strip()}\n</instruction>\n</inputs>\n\n"
        f"# OUTPUT\nBelow is the output of the task:\n<output>\n{answer.strip()}\n</output>\n\n"
        "# EVALUATION CRITERIA AND SCORING RUBRIC\n"
        "Here are the evaluation criteria and the rubric that you need to use for evaluating the task:\n"
        f"<evaluation_criteria>\n{criteria}\n</evaluation_criteria>\n\n"
        f"<scoring_rubric>\n{rubric_text(rubric)}\n</scoring_rubric>\n\n"
        "# INSTRUCTIONS FOR THE EVALUATION\n"
        "1. Understand the task and the criteria, and the levels of the scoring rubric.\n"
        "2. Review the inputs and the output.\n"
        "3. Compare the output with the description of each score and choose the one that fits best.\n"
        "4. Pay attention to small details that may change the score.\n"
        "5. Write verbal feedback justifying your evaluation, referring to specific parts of the output.\n"
        "6. Assign the final score.\n\n"
        "## FORMAT FOR THE EVALUATION\n"
        "- Write the verbal feedback inside <feedback> tags without any additional surrounding text.\n"
        "- Write the numeric score inside <score> tags, without any additional surrounding text and always "
        "after the feedback.\n\n"
        "Please accurately evaluate the task. Strictly adhere to the evaluation criteria and rubric."
    )


class JudgeOutputError(ValueError):
    """Judge output that cannot be read as exactly one 1–5 score; `reason` is a short machine label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class JudgeVerdict:
    score: int
    feedback: str


_SCORE = re.compile(r"<score>(.*?)</score>", re.S | re.I)
_FEEDBACK = re.compile(r"<feedback>(.*?)</feedback>", re.S | re.I)


def parse_flow_judge_output(text: str, low: int = 1, high: int = 5) -> JudgeVerdict:
    """Exactly one `<score>N</score>` with N an integer in [low, high]; feedback optional but kept."""
    if text is None or not text.strip():
        raise JudgeOutputError("empty_output", "the judge returned no text")
    scores = _SCORE.findall(text)
    if not scores:
        if re.search(r"<score>", text, re.I):
            raise JudgeOutputError("unclosed_score_tag", "found <score> without </score>")
        raise JudgeOutputError("no_score_tag", "no <score>…</score> in the output")
    if len(scores) > 1:
        raise JudgeOutputError("multiple_scores", f"{len(scores)} <score> tags: {scores!r}")
    raw = scores[0].strip()
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise JudgeOutputError("score_not_integer", f"score is {raw!r}, not an integer")
    value = int(raw)
    if not low <= value <= high:
        raise JudgeOutputError("score_out_of_range", f"score {value} is outside {low}–{high}")
    feedback = _FEEDBACK.findall(text)
    return JudgeVerdict(value, feedback[0].strip() if feedback else "")
