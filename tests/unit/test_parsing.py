import pytest

from fi_resources.logic.parsing import (
    OutputError,
    extract_json_object,
    format_genericizer_target,
    format_instantiator_target,
    parse_genericizer_output,
    parse_instantiator_output,
)


def test_extract_json_with_prose_fences_and_braces_in_strings():
    text = 'Sure! {not json} here:\n```json\n{"a": "x } { \\" y", "b": {"c": [1, 2]}}\n```\nDone. {"z": 1}'
    assert extract_json_object(text) == {"a": 'x } { " y', "b": {"c": [1, 2]}}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no braces here", "no_json"),
        ("", "no_json"),
        ('{"template": "unterminated', "invalid_json"),
        ("{'single': 'quotes'}", "invalid_json"),
        ("[1, 2, 3]", "not_an_object"),
        ('"just a string"', "not_an_object"),
    ],
)
def test_extract_json_errors(text, reason):
    with pytest.raises(OutputError) as err:
        extract_json_object(text)
    assert err.value.reason == reason


def test_genericizer_round_trip():
    template = "Between <fi>Entity A</fi> and <fi>Entity B</fi> which is more <fi>quality</fi>? “naïve”"
    description = 'A document comparing two "things".'
    target = format_genericizer_target(template, description)
    assert target.index('"template"') < target.index('"compatible_document_description"')
    assert "naïve" in target
    assert parse_genericizer_output(target) == (template, description)
    assert parse_genericizer_output(f"Output:\n{target}\n") == (template, description)


@pytest.mark.parametrize(
    "text",
    [
        '{"template": "a <fi>b</fi>"}',
        '{"template": "  ", "compatible_document_description": "d"}',
        '{"template": "t", "compatible_document_description": 3}',
    ],
)
def test_genericizer_missing_field(text):
    with pytest.raises(OutputError) as err:
        parse_genericizer_output(text)
    assert err.value.reason == "missing_field"


def test_instantiator_null():
    assert parse_instantiator_output("  null\n") is None
    assert format_instantiator_target(None, None) == "null"


def test_instantiator_round_trip():
    answer = "Yes.\n<excerpt>It is known that<...>of relativity.</excerpt>"
    target = format_instantiator_target("Is there a preferred inertial frame?", answer)
    assert target.startswith("Instruction: Is there")
    assert parse_instantiator_output(target) == ("Is there a preferred inertial frame?", answer)


def test_instantiator_cuts_a_second_pair():
    text = "Instruction: Q1?\nAnswer: A1 line one\nline two\n\nInstruction: Q2?\nAnswer: A2"
    assert parse_instantiator_output(text) == ("Q1?", "A1 line one\nline two")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("   ", "empty_output"),
        ("Answer: something", "missing_instruction"),
        ("Instruction:\nAnswer: something", "missing_instruction"),
        ("Instruction: Q?", "missing_answer"),
        ("Instruction: Q?\nAnswer:   \n", "missing_answer"),
        ("Instruction: Q?\nAnswer:\nInstruction: Q2?\nAnswer: A2", "missing_answer"),
    ],
)
def test_instantiator_errors(text, reason):
    with pytest.raises(OutputError) as err:
        parse_instantiator_output(text)
    assert err.value.reason == reason


def test_format_instantiator_rejects_unparseable_input():
    with pytest.raises(ValueError):
        format_instantiator_target("Q?", None)
    with pytest.raises(ValueError):
        format_instantiator_target("Q?\nAnswer: injected", "A")
    with pytest.raises(ValueError):
        format_instantiator_target("Q?", "A\nInstruction: more")
