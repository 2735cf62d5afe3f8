import pytest

from fi_resources.logic.templates import (
    Template,
    TemplateError,
    check_generic,
    fill_template,
    parse_template,
    template_literal,
    validate_template,
)

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
    check_generic(parse_template("Which is more <fi>reliable</fi>?"), QUERY)
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
