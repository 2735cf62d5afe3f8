"""Templates a user could ask once filled (question openings, no adjacent slots, typed slots), and what the
judge reads from the template: the filled values and whether the answer mentions what is asked."""

import pytest

from fi_resources.judge import LikelihoodJudge
from fi_resources.logic.rubric import TemplateSignals, judge_pair
from fi_resources.logic.templates import asked_coverage, asked_words, question_form_reason, recover_fillers


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("What currency is used in <fi>a country</fi>?", None),
        ("In which city is <fi>a musician</fi> buried?", None),
        ("Tell me about <fi>a city</fi>.", None),
        ("Port-au-Prince is the capital of <fi>a country</fi>?", "not_a_question"),
        ("Good morning, <fi>a person</fi>?", "not_a_question"),
        ("<fi>a tennis star</fi> won which tournament?", "not_a_question"),
        ("What country borders <fi>a country</fi> <fi>a country</fi>?", "adjacent_slots"),
        ("Which author wrote <fi>a Winnie-the-Pooh</fi> books?", "untyped_slot"),
        ("What country has the <fi>ancient</fi> forest?", "untyped_slot"),
        ("What is the <fi>a continent</fi> ocean?", "modifier_slot"),
        ("Which author wrote the <fi>a book</fi> books?", "modifier_slot"),
        ("What is a <fi>a computer</fi>?", None),  # the doubled article alone is repaired, not rejected
    ],
)
def test_question_form(template, reason):
    assert question_form_reason(template) == reason


def test_recover_fillers_reads_slot_values_back():
    tpl = "What is the national dish of <fi>a country</fi>?"
    assert recover_fillers(tpl, "What is the national dish of  Algeria?") == ["Algeria"]
    two = "Who wrote <fi>a book</fi> in <fi>a year</fi>?"
    assert recover_fillers(two, "who wrote Emma in 1815?") == ["Emma", "1815"]
    assert recover_fillers(tpl, "Where is Algeria?") is None


def test_asked_words_and_coverage():
    words = asked_words("What currency is used in <fi>a country</fi>?")
    assert words == {"currency", "used"}
    assert asked_words("What is <fi>a concept</fi>?") == set()
    assert asked_coverage(words, "The currency used in Algeria is the dinar.") == 1.0
    assert asked_coverage(words, "Algeria is a country in North Africa.") == 0.0
    assert asked_coverage(set(), "anything") == 1.0
    # A number the question names is asked for: "the 37th President" is not any president.
    president = asked_words("Who was the 37th President of <fi>a country</fi>?")
    assert president == {"37th", "president"}
    assert asked_coverage(president, "Vladimir Putin is the President of Russia.") == 0.5
    assert asked_coverage(president, "Richard Nixon, the 37th president, resigned.") == 1.0
    # Plurals and possessives match; a shared prefix does not ("county" is not "country").
    assert (
        asked_coverage(asked_words("Which country is known as <fi>a nickname</fi>?"), "Macon County") == 0.0
    )
    assert asked_coverage({"country"}, "Countries' borders") == 1.0


def test_template_anchors_cap_the_score():
    args = (30.0, 0.6, -2.0, "The currency used in Algeria is the Algerian dinar, issued by its bank.")
    assert judge_pair(*args).score >= 4
    assert judge_pair(*args, TemplateSignals(unaskable="not_a_question")).score <= 2
    assert judge_pair(*args, TemplateSignals(asked_coverage=0.0)).score <= 3
    assert judge_pair(*args, TemplateSignals(asked_coverage=1.0)).score >= 4


def test_the_judge_reads_the_template_it_was_filled_from():
    signals = LikelihoodJudge.template_signals
    tpl = "How many sides does <fi>a baseball</fi> have?"
    off = signals(tpl, "How many sides does Andre Agassi have?", "Agassi won eight Grand Slam titles.")
    assert off.unaskable is None and off.asked_coverage == 0.0
    on = signals(tpl, "How many sides does a hexagon have?", "A hexagon has six sides and six corners.")
    assert on.asked_coverage == 1.0
    assert signals(tpl, "Where is Algeria?", "Algeria is in Africa.").unaskable == "not_filled_from_template"
