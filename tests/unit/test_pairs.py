"""`read_pair`: the one reader of an instantiator's output into a grounded pair or a failure reason."""

from fi_resources.logic.pairs import read_pair

DOC = "Algeria is a country in North Africa. Its capital is Algiers, on the coast. The Sahara covers most of it."


def test_a_grounded_pair_is_expanded_with_its_document_spans():
    out = "Instruction: What is the capital of Algeria?\nAnswer: <excerpt>Its capital is<...>on the coast.</excerpt>"
    pair = read_pair(out, DOC, min_grounding=0.8)
    assert pair.ok and pair.instruction == "What is the capital of Algeria?"
    assert pair.answer == "Its capital is Algiers, on the coast."
    assert [DOC[a:b] for a, b in pair.doc_spans] == [pair.answer]
    assert pair.grounding_ratio == 1.0


def test_failures_carry_their_reason_and_what_was_read():
    assert read_pair("null", DOC).status == "refused_null"
    assert read_pair("", DOC).status == "empty_output"
    unknown = read_pair("Instruction: Q?\nAnswer: <excerpt>Not in<...>the text.</excerpt>", DOC)
    assert unknown.status == "unknown_excerpt" and unknown.instruction == "Q?" and unknown.answer is None
    free = (
        "Instruction: Where is Algeria?\nAnswer: I think it is somewhere warm, far away from here, probably."
    )
    low = read_pair(free, DOC, min_grounding=0.8)
    assert low.status == "low_grounding" and not low.ok and low.answer and low.grounding_ratio < 0.8
    assert read_pair(free, DOC).ok  # no grounding bar: the same output is a pair
