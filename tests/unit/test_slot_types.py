"""The judge's slot type check: the head noun of a slot, the rank rule, and the real 135M model's verdicts."""

import pytest

from fi_resources.judge import LikelihoodJudge
from fi_resources.lm import CausalLM, materialize_smollm2
from fi_resources.logic.rubric import TemplateSignals, judge_pair
from fi_resources.logic.slot_types import (
    TYPE_NOUNS,
    head_rank,
    people_mismatch,
    slot_head,
    subject_fits,
    type_mismatch,
    type_vocabulary,
)
from fi_resources.logic.templates import recover_fillers


def test_slot_head_is_the_head_noun():
    assert slot_head("a country") == "country"
    assert slot_head("a small unit of memory") == "unit"
    assert slot_head("a U.S. state") == "state"
    assert slot_head("the baseball player who won") == "player"
    assert slot_head("   ") is None


def test_the_rank_rule():
    scores = {t: 0.0 for t in TYPE_NOUNS} | {"nation": 5.0, "country": 4.0, "plant": 3.0}
    assert head_rank(scores, "nation") == 0 and head_rank(scores, "country") == 1
    assert type_mismatch("Algeria", "a country", scores, top_k=2) is None
    assert "typed as 'nation'" in type_mismatch("Algeria", "a country", scores, top_k=1)
    assert type_mismatch("Algeria", "a fruit", scores) is not None
    # A head outside the fixed vocabulary is ranked among it, with itself added.
    assert type_vocabulary("stewardess")[-1] == "stewardess"
    assert head_rank(scores | {"stewardess": 6.0}, "stewardess") == 0
    assert "empty" in type_mismatch(" ", "a country", scores)
    assert type_mismatch("Alchemy", "a thing", scores) is None  # every value is "a thing"


def test_who_asks_for_people_whatever_the_slot_says():
    idea = {t: 0.0 for t in TYPE_NOUNS} | {"idea": 5.0, "concept": 4.0, "theory": 3.0}
    thinker = {t: 0.0 for t in TYPE_NOUNS} | {"philosopher": 5.0, "idea": 4.0}
    assert "not a person" in people_mismatch("Anarchism", idea)
    assert people_mismatch("Aristotle", thinker) is None
    assert people_mismatch("Aristotle", {}) is None  # untyped: nothing to say
    # A people type third is not enough: the 135M typer ranks "Altruism" concept, theory, politician.
    altruism = {t: 0.0 for t in TYPE_NOUNS} | {"concept": 5.0, "theory": 4.0, "politician": 3.0}
    assert "not a person" in people_mismatch("Altruism", altruism)
    assert not subject_fits(["a person"], "definition", altruism, top_k=3, who=True)
    # A "Who is X?" definition takes only people as its subject; "What is X?" takes anything.
    assert not subject_fits(["a nation"], "definition", idea, who=True)
    assert subject_fits(["a nation"], "definition", thinker, who=True)
    assert subject_fits(["a nation"], "definition", idea)


def test_a_slot_left_empty_does_not_follow_the_template():
    template = "What year was President <fi>a person</fi> assassinated?"
    assert recover_fillers(template, "What year was President assassinated?") is None
    assert recover_fillers(template, "What year was President Lincoln assassinated?") == ["Lincoln"]


def test_a_mistyped_slot_caps_the_score():
    args = (30.0, 0.6, -2.0, "The currency used in Algeria is the Algerian dinar, issued by its bank.")
    assert judge_pair(*args, TemplateSignals(answer_kind="open", asked_coverage=1.0)).score >= 4
    capped = judge_pair(
        *args, TemplateSignals(answer_kind="open", asked_coverage=1.0, slot_type_mismatch="x")
    )
    assert capped.score == 3 and "wrong kind of thing" in capped.reason


@pytest.fixture(scope="module")
def judge(model_cache):
    return LikelihoodJudge(CausalLM(materialize_smollm2(model_cache / "smollm2-135m-instruct")), encoder=None)


def test_the_real_model_types_slot_values(judge):
    templates = [
        "What is the capital of <fi>a country</fi>?",
        "Who invented <fi>a computer</fi>?",
        "What is the common name for <fi>a fruit</fi>?",
        "Which <fi>a musician</fi> wrote the most songs?",
        "What is <fi>a fruit</fi>?",  # a definition question: the slot's type does not change what it asks
        "Who was <fi>a person</fi>?",  # ... but "Who" asks for a person (demo outputs at qw2)
        "Who was <fi>a person</fi>?",
    ]
    instructions = [
        "What is the capital of Algeria?",
        "Who invented animation?",
        "What is the common name for Autism?",
        "Which France wrote the most songs?",
        "What is Autism?",
        "Who was Anarchism?",
        "Who was Abraham Lincoln?",
    ]
    verdicts = judge.slot_type_mismatches(templates, instructions)
    assert verdicts[0] is None
    assert all(v is not None for v in verdicts[1:4]), verdicts
    assert verdicts[4] is None
    assert verdicts[5] is not None and "not a person" in verdicts[5]
    assert verdicts[6] is None
