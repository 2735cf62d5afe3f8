from fi_resources.logic.genericize import (
    build_template,
    find_specific_spans,
    parse_type_completion,
    slot_description,
)
from fi_resources.logic.templates import validate_template


def spans_of(q):
    return [(s.text, s.kind) for s in find_specific_spans(q)]


def test_finds_names_quotes_years_and_objects():
    assert spans_of("Which President of South Africa ordered Nelson Mandela’s release from prison?") == [
        ("President of South Africa", "name"),
        ("Nelson Mandela", "name"),
    ]
    assert ("Clueless", "quoted") in spans_of("Who played Cher Horowitz in the movie “Clueless”?")
    assert ("2016", "year") in spans_of("What country produced the most strawberries in 2016?")
    assert spans_of("What is the main ingredient in falafel?") == [("falafel", "object")]
    assert spans_of("How are you doing?") == []


def test_type_completion_parsing_rejects_chatter():
    assert parse_type_completion(" food.\nThe Beat") == "food"
    assert parse_type_completion(" programming language.") == "programming language"
    assert parse_type_completion(" the.") is None
    assert parse_type_completion("") is None
    assert parse_type_completion(" Food, which is a very long answer that rambles on") is None


def test_built_templates_are_valid_and_absorb_articles():
    q = "can you add authentication to a Flask API?"
    spans = find_specific_spans(q)
    t = build_template(q, spans, [slot_description(s, "web framework") for s in spans])
    assert t == "can you add authentication to <fi>a web framework</fi>?"
    template, reason = validate_template(t, q)
    assert reason is None and template.n_slots == 1
    q = "What year did 'The Simpsons' first air in 1989?"
    spans = find_specific_spans(q)
    t = build_template(q, spans, [slot_description(s, None) for s in spans])
    assert validate_template(t, q)[1] is None
    assert "<fi>a year</fi>" in t and "<fi>a title</fi>" in t
