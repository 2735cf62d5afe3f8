import pandas as pd
import pytest

from fi_resources.backends import BackendStats
from fi_resources.logic.parsing import format_genericizer_target
from fi_resources.logic.templates import (
    Template,
    TemplateError,
    check_generic,
    drop_doubled_articles,
    fill_template,
    follows_query,
    parse_template,
    template_literal,
    validate_template,
)
from fi_resources.settings import TemplateBankSettings
from fi_resources.stages.templates import template_bank

COMPARE = "Between <fi>Entity A</fi> and <fi>Entity B</fi> which is more <fi>characteristic</fi>?"


def test_parse_valid_template():
    template = parse_template(f"  {COMPARE}\n")
    assert template.text == COMPARE
    assert template.slots == ("Entity A", "Entity B", "characteristic")
    assert template.n_slots == 3


def test_slot_text_is_stripped():
    template = parse_template("Who wrote <fi> a book title </fi>?")
    assert template.slots == ("a book title",)
    assert template.text == "Who wrote <fi>a book title</fi>?"


def test_comparison_signs_are_not_markup():
    assert parse_template("Is <fi>x</fi> < 3 and y > 2?").n_slots == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("x" * 601, "too_long"),
        ("What is the capital of France?", "no_slots"),
        ("Who wrote <fi>book?", "unbalanced_tags"),
        ("Who wrote book</fi>?", "unbalanced_tags"),
        ("Who wrote <fi>a</fi> and b</fi>?", "unbalanced_tags"),
        ("<fi>outer <fi>inner</fi></fi>", "nested_tags"),
        ("Who wrote <fi>  </fi>?", "empty_slot"),
        (f"Who wrote <fi>{'y' * 61}</fi>?", "slot_too_long"),
        ("Who wrote <fi >book</fi>?", "bad_markup"),
        ("Who wrote <FI>book</FI>?", "bad_markup"),
        ("Explain <fi>topic</fi> <excerpt>x</excerpt>", "bad_markup"),
        ("Explain <fi>topic</fi> <...>", "bad_markup"),
    ],
)
def test_parse_rejects(text, reason):
    with pytest.raises(TemplateError) as err:
        parse_template(text)
    assert err.value.reason == reason
    assert validate_template(text) == (None, reason)


def test_limits_are_configurable():
    assert parse_template("a <fi>b</fi>", max_chars=12).n_slots == 1
    with pytest.raises(TemplateError, match="too_long"):
        parse_template("a <fi>b</fi>", max_chars=11)
    with pytest.raises(TemplateError, match="slot_too_long"):
        parse_template("a <fi>bcd</fi>", max_slot_chars=2)


def test_literal_and_fill():
    assert template_literal(COMPARE) == "Between Entity A and Entity B which is more characteristic?"
    assert fill_template(COMPARE, ["cats", "dogs", r"loyal \1"]) == (
        r"Between cats and dogs which is more loyal \1?"
    )
    with pytest.raises(ValueError):
        fill_template(COMPARE, ["cats", "dogs"])
    with pytest.raises(ValueError):
        fill_template(parse_template("a <fi>b</fi>"), "xy")


QUERY = 'Between the "Toyota Corolla" and the Honda Civic which is more reliable?'


@pytest.mark.parametrize(
    "text",
    [
        # (a) a slot of more than 3 words copied from the query
        "Between <fi>the Honda Civic which</fi> and <fi>car</fi> which is more <fi>quality</fi>?",
        # (b) nothing genericized: the literal is the query itself
        'Between the <fi>"Toyota Corolla"</fi> and the Honda Civic which is more reliable?',
        # (c) a quoted phrase of the query survives outside the slots
        'Between the "Toyota Corolla" and <fi>another car</fi> which is more <fi>quality</fi>?',
    ],
)
def test_not_generic(text):
    template = parse_template(text)
    with pytest.raises(TemplateError) as err:
        check_generic(template, QUERY)
    assert err.value.reason == "not_generic"
    assert validate_template(text, QUERY) == (None, "not_generic")


def test_generic_template_passes():
    template, reason = validate_template(COMPARE, QUERY)
    assert reason is None and isinstance(template, Template)
    # Short slot descriptions that happen to occur in the query are fine.
    check_generic(
        parse_template("Between <fi>a car</fi> and the Honda Civic which is more <fi>reliable</fi>?"), QUERY
    )
    check_generic(parse_template('Is "<fi>car</fi>" good?'), None)


def test_curly_quotes_are_checked():
    query = "Is “The Old Man and the Sea” a good book?"
    with pytest.raises(TemplateError, match="not_generic"):
        check_generic(parse_template("Is “The Old Man and the Sea” a good <fi>type</fi>?"), query)


def test_vague_slots_and_rambling_templates_are_rejected():
    assert validate_template("What is the most common letter in the <fi>a</fi> alphabet?")[1] == "vague_slot"
    long = (
        "A book by <fi>a man</fi> is titled <fi>a man</fi> is a book by <fi>a woman</fi> that contains the "
        "facts needed to answer: A book by a man is a book by a woman?"
    )
    assert (
        validate_template(long, "A book by Barack Obama is titled “The Audacity of” what?")[1]
        == "not_generic"
    )
    assert validate_template("Who wrote <fi>a book</fi>?", "Who wrote Hamlet?")[1] is None


@pytest.mark.parametrize(
    ("template", "query", "follows"),
    [
        ("Who wrote <fi>a play</fi>?", "Who wrote Hamlet", True),
        ("What's the capital of <fi>a country</fi>?", "What’s the capital of France", True),
        (
            "What is the name of <fi>a country</fi>’s capital city?",
            "What is the name of Jordan's capital city?",
            True,
        ),
        ("When was <fi>a person</fi> born?", "When was Barack Obama born?", True),
        # the genericizer dropped "hearts" and changed the verb: the template no longer asks the query's question
        ("How many <fi>an octopus</fi> has?", "How many hearts does an octopus have?", False),
        (
            "Who was the first female <fi>a country</fi> Prime Minister of?",
            "Who was the first female Prime Minister of Great Britain?",
            False,
        ),
        ("Who wrote <fi>a play</fi>?", "Who wrote?", False),  # a slot stands for at least one word
    ],
)
def test_a_template_must_follow_its_query(template, query, follows):
    assert follows_query(template, query) is follows


def test_a_doubled_article_before_a_slot_is_dropped_only_where_the_slot_ends_a_phrase():
    def fixed(text: str) -> str:
        return drop_doubled_articles(parse_template(text)).text

    assert fixed("What is a <fi>a computer</fi>?") == "What is <fi>a computer</fi>?"
    assert fixed("Who is the founder of the <fi>a nation</fi>?") == "Who is the founder of <fi>a nation</fi>?"
    assert fixed("Where was the <fi>a painting</fi> found?") == "Where was <fi>a painting</fi> found?"
    assert fixed("Where is the <fi>a lake</fi> located?") == "Where is <fi>a lake</fi> located?"
    # before a noun the slot is a modifier: left for question_form_reason to reject
    assert fixed("Who played for the <fi>a team</fi> team?") == "Who played for the <fi>a team</fi> team?"
    assert validate_template("What is a <fi>a computer</fi>?", "What is a super computer?")[0].text == (
        "What is <fi>a computer</fi>?"
    )


class ScriptedGenericizer:
    stats = BackendStats()

    def __init__(self, templates):
        self.outputs = [format_genericizer_target(t, "A text about the slot's subject.") for t in templates]

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None):
        return self.outputs[: len(prompts)]


def test_the_bank_keeps_only_templates_that_follow_their_query_unless_told_otherwise():
    queries = pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q3"],
            "query": [
                "Who wrote Hamlet?",
                "How many hearts does an octopus have?",
                "What is a super computer?",
            ],
        }
    )
    outputs = [
        "Who wrote <fi>a play</fi>?",
        "How many <fi>an octopus</fi> has?",
        "What is a <fi>a computer</fi>?",
    ]
    bank = template_bank(queries, ScriptedGenericizer(outputs), "g", TemplateBankSettings()).value
    assert bank["reason"].tolist() == ["ok", "not_faithful", "ok"]
    assert bank["template"].tolist()[2] == "What is <fi>a computer</fi>?"  # the doubled article dropped
    lenient = TemplateBankSettings(require_faithful_templates=False)
    assert template_bank(queries, ScriptedGenericizer(outputs), "g", lenient).value["valid"].all()
    assert "require_faithful_templates" in lenient.fingerprint()
    assert "require_faithful_templates" not in TemplateBankSettings().fingerprint()
