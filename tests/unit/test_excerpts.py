import re

import pytest

from fi_resources.logic.excerpts import (
    ELLIPSIS,
    EXCERPT_CLOSE,
    EXCERPT_OPEN,
    ExcerptError,
    count_marker_chars,
    expand_excerpts,
    make_excerpt_marker,
)

SENTENCE = "It is known that no preferred inertial frame exists according to the principle of relativity."
DOCUMENT = (
    "Special relativity rests on two postulates.\n\n"
    "The first is that the laws of physics are the same in all inertial frames. "
    "It is known that no preferred\n  inertial frame exists according to the principle of relativity. "
    "The second is that light travels at the same speed for every observer.\n"
    "Together these imply time dilation and length contraction."
)
START = DOCUMENT.index("It is known")
END = DOCUMENT.index("relativity. The second") + len("relativity.")


def test_expand_prefix_suffix_marker_on_original_document():
    markup = f"Yes. {EXCERPT_OPEN}It is known that <...> the principle of relativity.{EXCERPT_CLOSE}"
    answer = expand_excerpts(markup, DOCUMENT)
    assert answer.doc_spans == ((START, END),)
    expanded = DOCUMENT[START:END]
    assert " ".join(expanded.split()) == SENTENCE
    assert answer.text == "Yes. " + expanded
    ((a, b),) = answer.answer_spans
    assert answer.text[a:b] == expanded
    non_space = sum(not c.isspace() for c in answer.text)
    assert answer.excerpt_chars == non_space - len("Yes.")
    assert answer.grounding_ratio == pytest.approx(answer.excerpt_chars / non_space)
    assert count_marker_chars(markup) < len(answer.text)


def test_literal_excerpt_and_glue():
    markup = (
        f"\n{EXCERPT_OPEN}Special relativity rests on two postulates.{EXCERPT_CLOSE}"
        f"{EXCERPT_OPEN}Together these imply{ELLIPSIS}contraction.{EXCERPT_CLOSE}  \n"
    )
    answer = expand_excerpts(markup, DOCUMENT)
    assert answer.text == (
        "Special relativity rests on two postulates. "
        "Together these imply time dilation and length contraction."
    )
    assert answer.grounding_ratio == 1.0
    for (ds, de), (a, b) in zip(answer.doc_spans, answer.answer_spans, strict=True):
        assert answer.text[a:b] == DOCUMENT[ds:de]


def test_whitespace_is_collapsed_when_matching():
    answer = expand_excerpts(f"{EXCERPT_OPEN}no   preferred inertial\tframe{EXCERPT_CLOSE}", DOCUMENT)
    ((s, e),) = answer.doc_spans
    assert DOCUMENT[s:e] == "no preferred\n  inertial frame"


def test_grounding_ratio_counts_non_whitespace_glue():
    document = "abcdefgh ijkl"
    answer = expand_excerpts(f"xy {EXCERPT_OPEN}abcdefgh{EXCERPT_CLOSE}", document)
    assert answer.excerpt_chars == 8
    assert answer.grounding_ratio == pytest.approx(0.8)
    only_glue = expand_excerpts("Just prose.", document)
    assert only_glue.grounding_ratio == 0.0 and only_glue.doc_spans == ()


def test_shortest_span_per_prefix():
    document = "alpha one end two end"
    answer = expand_excerpts(f"{EXCERPT_OPEN}alpha<...>end{EXCERPT_CLOSE}", document)
    assert answer.text == "alpha one end"


@pytest.mark.parametrize(
    ("markup", "reason"),
    [
        (f"{EXCERPT_OPEN}It is known", "unbalanced_excerpt_tags"),
        (f"It is known{EXCERPT_CLOSE}", "unbalanced_excerpt_tags"),
        (f"{EXCERPT_OPEN}a{EXCERPT_OPEN}b{EXCERPT_CLOSE}{EXCERPT_CLOSE}", "unbalanced_excerpt_tags"),
        (f"{EXCERPT_OPEN}  {EXCERPT_CLOSE}", "empty_excerpt"),
        (f"{EXCERPT_OPEN}<...>relativity.{EXCERPT_CLOSE}", "empty_excerpt"),
        (f"{EXCERPT_OPEN}It is known that<...>quantum gravity{EXCERPT_CLOSE}", "unknown_excerpt"),
        (f"{EXCERPT_OPEN}Newton said<...>relativity.{EXCERPT_CLOSE}", "unknown_excerpt"),
        (f"{EXCERPT_OPEN}a made up sentence{EXCERPT_CLOSE}", "unknown_excerpt"),
        # Suffix only before the prefix: the suffix must come after the prefix.
        (f"{EXCERPT_OPEN}Together<...>Special{EXCERPT_CLOSE}", "unknown_excerpt"),
        (f"{EXCERPT_OPEN}the<...>observer.{EXCERPT_CLOSE}", "ambiguous_excerpt"),
        (f"{EXCERPT_OPEN}inertial frame{EXCERPT_CLOSE}", "ambiguous_excerpt"),
        ("   ", "empty_answer"),
        # A mistyped tag left in the glue after a good marker (seen in a demo's kept pair).
        (f"{EXCERPT_OPEN}The second<...>every observer.{EXCERPT_CLOSE}</excerpt]", "malformed_excerpt_tag"),
        ("So: <excerpt >The second<...>every observer.", "malformed_excerpt_tag"),
        ("Together <...> relativity.", "malformed_excerpt_tag"),
    ],
)
def test_bad_markers(markup, reason):
    with pytest.raises(ExcerptError) as err:
        expand_excerpts(markup, DOCUMENT)
    assert err.value.reason == reason


def test_max_span_chars():
    markup = f"{EXCERPT_OPEN}Special relativity<...>contraction.{EXCERPT_CLOSE}"
    assert expand_excerpts(markup, DOCUMENT).doc_spans == ((0, len(DOCUMENT)),)
    with pytest.raises(ExcerptError, match="unknown_excerpt"):
        expand_excerpts(markup, DOCUMENT, max_span_chars=100)


def test_first_bad_marker_is_reported():
    markup = f"{EXCERPT_OPEN}no such text{EXCERPT_CLOSE} {EXCERPT_OPEN}inertial frame{EXCERPT_CLOSE}"
    with pytest.raises(ExcerptError, match="unknown_excerpt"):
        expand_excerpts(markup, DOCUMENT)


def test_make_marker_round_trip_on_sentence():
    marker = make_excerpt_marker(DOCUMENT, START, END)
    assert marker == f"{EXCERPT_OPEN}It is known that<...>the principle of relativity.{EXCERPT_CLOSE}"
    assert expand_excerpts(marker, DOCUMENT).doc_spans == ((START, END),)


def test_make_marker_round_trip_on_every_sentence_and_pair():
    sentences = [m.span() for m in re.finditer(r"\S[^.]*\.", DOCUMENT)]
    spans = sentences + [(sentences[i][0], sentences[i + 1][1]) for i in range(len(sentences) - 1)]
    for start, end in spans:
        for words in (1, 2, 4):
            marker = make_excerpt_marker(DOCUMENT, start, end, words=words)
            assert expand_excerpts(marker, DOCUMENT).doc_spans == ((start, end),), marker


def test_make_marker_grows_and_falls_back_to_literal():
    document = "p z u . p q r s t u"
    # "p<...>u" also matches "p z u", so the marker grows to two words per side.
    assert make_excerpt_marker(document, 8, len(document), words=1) == (
        f"{EXCERPT_OPEN}p q{ELLIPSIS}t u{EXCERPT_CLOSE}"
    )
    # Two words cannot be split into a prefix and a later suffix: the literal excerpt is used.
    assert make_excerpt_marker(document, 0, 3, words=1) == f"{EXCERPT_OPEN}p z{EXCERPT_CLOSE}"


def test_make_marker_rejects_unidentifiable_spans():
    document = "a b c x a b c y a b c"
    with pytest.raises(ValueError):
        make_excerpt_marker(document, 0, 5)  # "a b c" occurs three times
    with pytest.raises(ValueError):
        make_excerpt_marker(document, 0, 2)  # ends with whitespace
    with pytest.raises(ValueError):
        make_excerpt_marker(document, 3, 3)


def test_an_answer_cut_mid_sentence_runs_on_to_the_sentence_end():
    from fi_resources.logic.excerpts import finish_last_sentence
    from fi_resources.logic.pairs import read_pair

    doc = (
        "Abraham Lincoln was the 16th President of the United States, serving until his assassination in "
        "April 1865. He led the nation through the Civil War.\n\nLincoln was born in Kentucky"
    )
    cut = expand_excerpts("<excerpt>Abraham Lincoln was<...>his assassination in</excerpt>", doc)
    done = finish_last_sentence(cut, doc, 300)
    assert done.text.endswith("assassination in April 1865.") and done.grounding_ratio == 1.0
    assert doc[slice(*done.doc_spans[0])] == done.text and done.answer_spans == ((0, len(done.text)),)
    assert finish_last_sentence(cut, doc, 5) == cut  # the sentence ends too far away
    assert finish_last_sentence(cut, doc, 0) == cut
    # Glue after the excerpt: the model wrote the ending itself.
    glued = expand_excerpts("<excerpt>Abraham Lincoln was<...>his assassination in</excerpt> 1865", doc)
    assert finish_last_sentence(glued, doc, 300) == glued
    # No run-on across a paragraph break, and a finished excerpt is left as it is.
    last = expand_excerpts("<excerpt>He led<...>Civil War.</excerpt>", doc)
    assert finish_last_sentence(last, doc, 300) == last
    tail = expand_excerpts("<excerpt>Lincoln was born in</excerpt>", doc)
    assert finish_last_sentence(tail, doc, 300) == tail  # the document ends without a sentence end
    mixed = expand_excerpts("Yes: <excerpt>He led the nation through</excerpt>", doc)
    assert finish_last_sentence(mixed, doc, 300).text == "Yes: He led the nation through the Civil War."
    # read_pair applies it when asked, and the spans stay in the document's coordinates.
    output = "Instruction: When was Lincoln assassinated?\nAnswer: <excerpt>Abraham Lincoln<...>assassination in</excerpt>"
    pair = read_pair(output, doc, 0.8, finish_sentence_chars=300)
    assert pair.ok and pair.answer.endswith("April 1865.") and doc[slice(*pair.doc_spans[0])] == pair.answer
    assert read_pair(output, doc, 0.8).answer.endswith("assassination in")
