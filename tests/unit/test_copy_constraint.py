"""Copy-constrained excerpt markers: scripted 'model favourites' on a toy vocabulary, then the real decode loop
on the tiny random Llama, whose outputs are nonsense that the constraint must keep expandable."""

import pytest

from fi_resources.lm import CausalLM, materialize_tiny_lm
from fi_resources.logic.copy_constraint import ExcerptCopyConstraint, TokenPieces
from fi_resources.logic.excerpts import ExcerptError, expand_excerpts

VOCAB = [
    "<eos>",
    "Answer:",
    " <",
    "excerpt",
    ">",
    "<",
    "...",
    "/",
    "</excerpt>",
    "The",
    " cat",
    " sat",
    " on",
    " the",
    " mat",
    ".",
    " dog",
    " ran",
    " away",
    " It",
    " was",
    " happy",
    "\n",
    " ",
]
ID = {p: i for i, p in enumerate(VOCAB)}
EOS = {ID["<eos>"]}
DOC = "The cat sat on the mat. It was happy.\n\nThe dog ran away."
PIECES = TokenPieces(VOCAB)


def ids(*pieces: str) -> list[int]:
    return [ID[p] for p in pieces]


def drive(rule: ExcerptCopyConstraint, favourites: list[int]) -> str:
    """What the decode loop does with a row: the favourite if accepted, else the best allowed token, the
    model's ranking being its later favourites, then the vocabulary order."""
    text = ""
    for step, fav in enumerate(favourites):
        token = fav
        if not rule.accepts(fav):
            ranked = list(dict.fromkeys([*favourites[step + 1 :], *range(len(VOCAB))]))
            allowed = rule.allowed()
            token = next(t for t in ranked if (t in allowed if allowed is not None else rule.accepts(t)))
        rule.advance(token, forced=token != fav)
        if token in EOS:
            break
        text += VOCAB[token]
    return text


OPEN = ["Answer:", " <", "excerpt", ">"]


def test_text_the_document_lacks_is_replaced_by_document_text() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    # The model wants "The cat sat on the dog ran" -- " dog" cannot follow "the" in this document.
    text = drive(rule, ids(*OPEN, "The", " cat", " sat", " on", " the", " dog", "</excerpt>", "<eos>"))
    assert "dog" not in text and rule.forced >= 1
    assert expand_excerpts(text.split("Answer:")[1], DOC).text.startswith("The cat sat on the")


def test_end_of_text_inside_an_excerpt_is_refused_and_the_tags_balance() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    text = drive(rule, ids(*OPEN, " It", " was", "<eos>", "</excerpt>", "<eos>"))
    assert text.count("<excerpt>") == text.count("</excerpt>") == 1
    assert expand_excerpts(text.split("Answer:")[1], DOC).text.startswith("It was")


def test_suffix_after_the_ellipsis_must_follow_the_prefix_in_the_document() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    # Markers written piece by piece; the suffix may start at any word after the prefix.
    favourites = ids(*OPEN, " It", " was", "<", "...", ">", "The", " dog", " ran", "<", "/", "excerpt", ">")
    text = drive(rule, favourites + ids("<eos>"))
    answer = expand_excerpts(text.split("Answer:")[1], DOC)
    assert answer.text == "It was happy.\n\nThe dog ran"


def test_markup_outside_an_excerpt_is_refused() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    assert not rule.accepts(ID["</excerpt>"])
    drive(rule, ids("Answer:", "<", "..."))
    assert not rule.accepts(ID[">"])  # it would complete a stray "<...>"
    assert rule.accepts(ID[" cat"])  # anything else is free outside an excerpt


def test_a_marker_is_closed_when_the_budget_runs_out() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=12)
    favourites = ids(*OPEN, "The", " cat", " sat", " on", " the", " mat", ".", " It", " was", " happy")
    text = drive(rule, favourites[:12])  # the decode loop stops a row at its budget
    markup = text.split("Answer:")[1].split("</excerpt>")[0] + "</excerpt>"
    assert "</excerpt>" in text and expand_excerpts(markup, DOC).text == "The cat sat"


def test_whitespace_pieces_copy_collapsed_document_whitespace() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    text = drive(rule, ids(*OPEN, " happy", ".", "\n", "The", " dog", "</excerpt>", "<eos>"))
    assert expand_excerpts(text.split("Answer:")[1], DOC).text == "happy.\n\nThe dog"


def test_allowed_tokens_at_an_excerpt_start_are_word_starts_of_the_document() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    drive(rule, ids(*OPEN))
    allowed = {VOCAB[t] for t in rule.allowed() or []}
    assert {"The", " cat", " It", " dog", " "} <= allowed
    assert "</excerpt>" not in allowed and "<eos>" not in allowed  # nothing to close yet


@pytest.fixture(scope="module")
def lm(model_cache) -> CausalLM:
    return CausalLM(materialize_tiny_lm(model_cache / "tiny-llama"))


def test_random_model_outputs_stay_expandable_under_the_constraint(lm: CausalLM) -> None:
    docs = [
        "Rivers flow into the sea. Most rivers start in mountains, fed by rain and snow.",
        "Paris is the capital of France and its largest city, on the Seine.",
        "Cats sleep for most of the day; they hunt at dawn and dusk.",
    ]
    pieces = lm.token_pieces()
    opener = lm.tokenizer("Answer: <excerpt>", add_special_tokens=False)["input_ids"]
    rules = []
    for doc in docs:
        rule = ExcerptCopyConstraint(doc, pieces, lm._eos_ids, max_new_tokens=len(opener) + 16)
        for t in opener:  # as if the model had written the opener itself
            rule.advance(t)
        rules.append(rule)
    prompts = [lm.tokenizer(f"Document: {d}\nAnswer: <excerpt>")["input_ids"] for d in docs]
    rows = lm.greedy_token_ids(prompts, max_new_tokens=16, batch_size=2, constraints=rules)
    assert sum(r.forced for r in rules) > 0  # a random model never copies by itself
    for doc, row in zip(docs, rows, strict=True):
        markup = "<excerpt>" + lm.tokenizer.decode([t for t in row if t not in lm._eos_ids])
        assert markup.count("<excerpt>") == markup.count("</excerpt>") == 1, markup
        try:
            expand_excerpts(markup, doc)
        except ExcerptError as e:
            assert e.reason == "ambiguous_excerpt", markup


def test_a_tag_started_with_an_ambiguous_piece_becomes_the_marker_the_model_goes_on_to_write() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    # "<" starts both "<...>" and "</excerpt>"; the next pieces decide.
    text = drive(rule, ids(*OPEN, " It", " was", "<", "/", "excerpt", ">", "<eos>"))
    assert rule.forced == 0 and text.endswith("It was</excerpt>")


def test_a_marker_is_not_closed_while_it_names_several_spans() -> None:
    rule = ExcerptCopyConstraint(DOC, PIECES, EOS, max_new_tokens=40)
    # "The" occurs twice: closing after it would be ambiguous, so the model's close is refused once.
    text = drive(rule, ids(*OPEN, "The", "</excerpt>", " dog", "</excerpt>", "<eos>"))
    assert expand_excerpts(text.split("Answer:")[1], DOC).text == "The dog"
