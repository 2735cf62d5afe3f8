"""The instantiator's second distillation round: balanced selection (logic/stratify.py) and the stage that
turns the round-1 student's judged outputs into training examples."""

from collections import Counter

import pandas as pd
import pytest

from fi_resources.backends import BackendStats
from fi_resources.logic.parsing import format_instantiator_target
from fi_resources.logic.stratify import balanced_sample, complexity_bucket, length_bucket, stratum, topic
from fi_resources.settings import InstantiationSettings, JudgeSettings
from fi_resources.stages.generation import instantiator_examples, round2_instantiations


def test_balanced_sample_takes_small_strata_whole_and_shares_the_rest():
    strata = ["a"] * 10 + ["b"] * 2 + ["c"] * 5
    chosen = balanced_sample(strata, 9, seed=0)
    counts = Counter(strata[i] for i in chosen)
    assert len(chosen) == len(set(chosen)) == 9 and chosen == sorted(chosen)
    assert counts["b"] == 2
    assert sorted([counts["a"], counts["c"]]) == [3, 4]
    assert balanced_sample(strata, 9, seed=0) == chosen
    assert {tuple(balanced_sample(strata, 9, seed=s)) for s in range(5)} != {tuple(chosen)}


def test_balanced_sample_bounds():
    assert balanced_sample(["x", "y"], 5, seed=1) == [0, 1]
    assert balanced_sample([], 3, seed=1) == []
    assert balanced_sample(["x"], 0, seed=1) == []
    with pytest.raises(ValueError, match="n must be"):
        balanced_sample(["x"], -1, seed=1)


@pytest.mark.parametrize(
    ("instruction", "answer", "expected"),
    [
        ("How do I write a Python function that sums a list?", "Use sum().", "code"),
        ("What does the compiler do?", "It translates source code.", "code"),
        ("How do you solve a quadratic equation?", "Use the formula.", "math"),
        ("What is 2 + 3?", "It is 5.", "math"),
        ("Where is Algeria?", "Algeria is in North Africa; its area is 2,381,741 km2 (1962-2020).", "other"),
        ("What is a television program?", "A segment of content broadcast on television.", "other"),
    ],
)
def test_topic_by_keywords(instruction, answer, expected):
    assert topic(instruction, answer) == expected


def test_length_and_complexity_buckets():
    assert length_bucket("word " * 39) == "short"
    assert length_bucket("word " * 40) == "medium"
    assert length_bucket("word " * 120) == "long"
    assert [complexity_bucket(n) for n in (0, 1, 2, 3, 7)] == ["0", "1", "2", "3+", "3+"]
    assert stratum("What is Algeria?", "Algeria is a country.", 1) == "short/1/other"


ASCII = (
    "ASCII is a character encoding standard for electronic communication. ASCII codes represent text in "
    "computers and other devices. Work on the ASCII standard began in May 1961."
)
ALGIERS = "Algiers is the capital and largest city of Algeria. The city lies on the Mediterranean coast."
DOCUMENTS = pd.DataFrame(
    {
        "doc_id": ["d-ascii", "d-algiers"],
        "source_doc_id": ["ascii", "algiers"],
        "title": ["ASCII", "Algiers"],
        "text": [ASCII, ALGIERS],
        "offset": [0, 0],
    }
)
WHAT_IS = "What is <fi>a standard</fi>?"
CAPITAL = "What is the capital of <fi>a country</fi>?"
OUTPUTS = {
    ("d-ascii", WHAT_IS): "Instruction: What is ASCII?\nAnswer: <excerpt>ASCII is a<...>electronic communication.</excerpt>",
    ("d-ascii", CAPITAL): "Instruction: What is the capital of ASCII?\nAnswer: <excerpt>ASCII codes<...>other devices.</excerpt>",
    ("d-algiers", WHAT_IS): "Instruction: What is Algiers?\nAnswer: <excerpt>no such words<...>here</excerpt>",
    ("d-algiers", CAPITAL): "Instruction: What is the capital of Algeria?\nAnswer: <excerpt>Algiers is the<...>city of Algeria.</excerpt>",
}  # fmt: skip


class Student:
    """The round-1 student: a fixed output per (passage, template)."""

    def __init__(self):
        self.stats, self.prompts = BackendStats(), []

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None, **_):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            template = prompt.split("Template: ", 1)[1].split("\nDocument: ", 1)[0]
            doc = "d-ascii" if ASCII in prompt else "d-algiers"
            out.append(OUTPUTS[(doc, template)])
        return out


class Judge:
    """Passes an instruction only when its subject fits its question (what a real judge should do)."""

    name = "judge/test"

    def score(self, instructions, answers, progress=None, templates=None):
        return [
            {"judge_score": 2 if "capital of ASCII" in i else 5, "judge_value": 0.5, "judge_reason": "test",
             "judge_feedback": None, "judge_error": None}
            for i in instructions
        ]  # fmt: skip


MATCHES = pd.DataFrame(
    [
        {"match_id": f"{d}:{t}", "doc_id": d, "shard": "s0", "template_id": t, "query_id": f"q-{t}", "template": t}
        for d in DOCUMENTS["doc_id"]
        for t in (WHAT_IS, CAPITAL)
    ]
)  # fmt: skip


def run_round2(**settings):
    student = Student()
    result = round2_instantiations(
        MATCHES, DOCUMENTS, student, "instantiator@r1", Judge(), lambda s: len(s.split()),
        InstantiationSettings(**settings), JudgeSettings(),
    )  # fmt: skip
    return result, student


def test_round2_trains_on_the_students_outputs_that_the_judge_passes():
    result, student = run_round2(instantiator_rounds=2, round2_candidates=10, round2_examples=10)
    df = result.value
    assert len(student.prompts) == 4  # every candidate match, once
    real = df[df["target"] != "null"]
    # d-algiers × WHAT_IS does not expand (unknown excerpt); "capital of ASCII" fails the judge.
    assert sorted(real["doc_id"] + "|" + real["template_id"]) == [
        "d-algiers|" + CAPITAL,
        "d-ascii|" + WHAT_IS,
    ]
    assert real.set_index("doc_id").at["d-ascii", "target"] == format_instantiator_target(
        "What is ASCII?", "<excerpt>ASCII is a<...>electronic communication.</excerpt>"
    )
    assert set(real["stratum"]) == {"short/1/other"} and (real["judge_score"] == 5).all()
    assert (df["target"] == "null").sum() == 1  # ~5 % of 2, at least one
    assert len(instantiator_examples(df)) == len(df)
    steps = dict(result.stats["funnel"].steps)
    assert list(steps.values()) == [4, 3, 2, 2]


def test_round2_keeps_at_most_round2_examples_and_samples_candidates():
    result, student = run_round2(instantiator_rounds=2, round2_candidates=3, round2_examples=1)
    assert len(student.prompts) == 3
    assert (result.value["target"] != "null").sum() <= 1


def test_one_round_makes_no_round2_rows_and_bad_rounds_are_refused():
    result, student = run_round2()
    assert result.value.empty and not student.prompts and "off" in result.stats["round_2"]
    with pytest.raises(ValueError, match="instantiator_rounds"):
        run_round2(instantiator_rounds=3)


def test_round2_settings_change_the_fingerprint_only_when_on():
    assert InstantiationSettings().fingerprint() == InstantiationSettings(round2_examples=7).fingerprint()
    on = InstantiationSettings(instantiator_rounds=2)
    assert on.fingerprint() != InstantiationSettings(instantiator_rounds=2, round2_examples=7).fingerprint()
    assert "instantiator_rounds" not in InstantiationSettings().fingerprint()
