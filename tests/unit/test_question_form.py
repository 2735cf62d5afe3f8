"""Templates a user could ask once filled: question openings, no adjacent slots, typed slot descriptions."""

import pytest

from fi_resources.logic.templates import question_form_reason


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
    ],
)
def test_question_form(template, reason):
    assert question_form_reason(template) == reason
