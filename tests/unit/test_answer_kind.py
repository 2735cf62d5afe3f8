import pytest

from fi_resources.logic.answer_kind import answer_kind_mismatch, question_kind
from fi_resources.logic.rubric import TemplateSignals, judge_pair
from fi_resources.logic.templates import question_form_reason


@pytest.mark.parametrize(
    "instruction, kind, subject",
    [
        ("What is Autism?", "definition", "Autism"),
        ("Who was Abraham Lincoln?", "definition", "Abraham Lincoln"),
        ("Tell me about the Eiffel Tower.", "definition", "Eiffel Tower"),
        ("Where is Algeria located?", "location", "Algeria"),
        ("How many moons does Mars have?", "count", "moons"),
        ("When did the Second World War end?", "time", None),
        ("In what year was the Magna Carta signed?", "time", None),
        ("Who wrote Hamlet?", "person", None),
        ("Who is the President of Argentina?", "role", "President of Argentina"),
        ("Who was the first king of England?", "role", "king of England"),
        ("Who is the Community Bank of Madison?", "open", None),  # no role: a name with "of" in it
        ("What is the capital of France?", "open", None),  # a value, not a definition
        ("What was Andre Agassi’s first name?", "open", None),
    ],
)
def test_question_kind(instruction, kind, subject):
    assert question_kind(instruction) == (kind, subject)


# Answers taken from the pipeline's own outputs in audit/labels (tune split).
@pytest.mark.parametrize(
    "instruction, answer, responds",
    [
        (
            "What is Autism?",
            "Autism is a neurodevelopmental disorder characterized by impaired interaction.",
            True,
        ),
        ("What is Autism?", "The relationship of neurochemicals to autism is not well understood.", False),
        ("What is Australia?", "Australia has escaped with a draw after a dramatic final day.", False),
        (
            "What is American?",
            "An American in Paris is a jazz-influenced symphonic poem by George Gershwin.",
            False,
        ),
        (
            "What is an Academy Award?",
            'The Academy Awards, or "Oscars", is an annual American awards ceremony.',
            True,
        ),
        (
            "Where is Algeria located?",
            "Algeria ( '; Dzayer), officially People's Democratic Republic of Algeria, is a sovereign state in "
            "North Africa on the Mediterranean coast.",
            True,
        ),
        ("Where is Algeria located?", "Algeria has many oil fields and a large army.", False),
        # Leads of the demo's Wikipedia passages (d265c03) that define their subject after a frame, a second name
        # or a nested parenthesis.
        (
            "What is Achilles?",
            "In Greek mythology, Achilles (; , Akhilleus, ) was a Greek hero of the Trojan War.",
            True,
        ),
        ("What is Altruism?", "Altruism or selflessness is the principle or practice of concern.", True),
        (
            "What is Apollo?",
            "Apollo (Attic, Ionic, and Homeric Greek: , Apollōn ( ); Doric: , Apellōn; ) is one of the most "
            "important of the Olympian deities.",
            True,
        ),
        ("What is Anthropology?", "In 1850, its present use first appeared in Germany.", False),
        ("What is Nature?", "Sickness relied on the harmony of man and Nature the macrocosm.", False),
        (
            "How many children does John Turnidge have?",
            "John Turnidge directs the Children's Hospital.",
            False,
        ),
        ("How many signs are there in Autism?", "Parents notice signs in the first two years.", False),
        ("How many moons does Mars have?", "Mars has two small moons, Phobos and Deimos.", True),
        ("When did the war end?", "The war ended in May 1945.", True),
        ("When did the war end?", "The war ended after long talks.", False),
        ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare.", True),
        ("Who wrote Hamlet?", "Hamlet is a tragedy set in Denmark.", False),
    ],
)
def test_answer_kind_mismatch(instruction, answer, responds):
    assert (answer_kind_mismatch(instruction, answer) is None) is responds


def test_a_mismatch_or_a_partial_open_answer_caps_the_score_at_3():
    args = (20.0, 0.8, -2.0, "Autism is a neurodevelopmental disorder characterized by impaired interaction.")
    assert judge_pair(*args, TemplateSignals(answer_kind="definition")).score >= 4
    assert judge_pair(*args, TemplateSignals(answer_kind="definition", answer_mismatch="x")).score == 3
    assert judge_pair(*args, TemplateSignals(answer_kind="open", asked_coverage=0.5)).score == 3
    assert judge_pair(*args, TemplateSignals(answer_kind="open", asked_coverage=1.0)).score >= 4


@pytest.mark.parametrize(
    "template, reason",
    [
        ("Which <fi>a city</fi> is known as <fi>a person</fi>?", "slot_is_asked"),
        ("In which <fi>a city</fi> airport is <fi>a person</fi>?", "slot_is_asked"),
        ("can you do <fi>a thing</fi> in <fi>a language</fi>?", "asks_nothing"),
        ("What was <fi>a baseball player</fi>’s first name?", "asks_nothing"),
        ("What is <fi>a thing</fi>?", None),
        ("Where is <fi>a country</fi> located?", None),
        ("What currency is used in <fi>a country</fi>?", None),
    ],
)
def test_bank_rejects_templates_no_answer_could_be_checked_against(template, reason):
    assert question_form_reason(template) == reason


def test_a_role_question_wants_the_role_tied_to_its_holder():
    asked = "Who is the President of Argentina?"
    # lee-news pairs: the first answers; the second names a president, but not Argentina's
    assert (
        answer_kind_mismatch(asked, "Argentine President Adolfo Rodriguez Saa has asked the banks to help.")
        is None
    )
    assert answer_kind_mismatch(asked, "The President of Argentina, Adolfo Rodriguez Saa, spoke.") is None
    assert answer_kind_mismatch(asked, "Argentina's president Adolfo Rodriguez Saa spoke.") is None
    bush = "President Bush says a scientist had helped. UTN claims to serve the needy of Argentina."
    assert "never ties 'President'" in answer_kind_mismatch(asked, bush)
    assert "names no one new" in answer_kind_mismatch(asked, "The president of Argentina is elected.")
