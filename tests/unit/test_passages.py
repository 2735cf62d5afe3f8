"""Passages: verbatim, offset-addressed slices of documents of any length (fi_resources.logic.passages)."""

import re

import pytest

from fi_resources.logic.passages import (
    Passage,
    fallback_title,
    is_fallback_title,
    passage_doc_id,
    sample_passages,
    source_limit,
    split_passages,
    text_share,
)
from fi_resources.sources import lead_document, wikipedia_articles

MAX, MIN = 1200, 200
SENTENCE_OR_PARAGRAPH_END = re.compile(r"([.!?…][\"'”’»)\]]*|[。！？])$")


@pytest.fixture(scope="module")
def long_articles() -> list[str]:
    return [x for _, x in wikipedia_articles() if len(x) > 20_000]


def assert_well_formed(text: str, passages: list[Passage], max_chars: int = MAX) -> None:
    """Indexed in order, inside the text, not overlapping, trimmed, within max_chars, and the gaps between
    them only whitespace: nothing but whitespace is lost."""
    assert [p.index for p in passages] == list(range(len(passages)))
    bounds = [0, *[x for p in passages for x in (p.start, p.end)], len(text)]
    assert bounds == sorted(bounds)
    for gap_start, gap_end in zip(bounds[::2], bounds[1::2], strict=True):
        assert not text[gap_start:gap_end].strip(), text[gap_start:gap_end][:80]
    for p in passages:
        piece = text[p.start : p.end]
        assert piece and piece == piece.strip()
        assert p.length == len(piece) <= max_chars


def test_long_wikipedia_articles_are_covered_by_verbatim_passages(long_articles):
    assert len(long_articles) >= 50
    for text in long_articles:
        passages = split_passages(text, MAX, MIN)
        assert_well_formed(text, passages)
        assert sum(p.length for p in passages) / len(text) >= 0.9
        assert text_share(text, passages) >= 0.99
        lead = lead_document(text, MAX)
        assert sum(p.length for p in passages) > 10 * len(lead)


def test_boundaries_land_on_paragraph_or_sentence_ends(long_articles):
    ends = {"paragraph": 0, "sentence or line": 0, "other": 0}
    for text in long_articles:
        for p in split_passages(text, MAX, MIN):
            after = text[p.end : p.end + 4]
            if p.end == len(text) or re.match(r"[^\S\n]*\r?\n[^\S\n]*\n", after):
                ends["paragraph"] += 1
            elif after.startswith("\n") or SENTENCE_OR_PARAGRAPH_END.search(text[p.start : p.end]):
                ends["sentence or line"] += 1
            else:
                ends["other"] += 1
    assert ends["other"] == 0, ends
    assert ends["paragraph"] > ends["sentence or line"]


def test_paragraphs_are_packed_and_long_ones_cut_at_sentence_ends():
    paras = [" ".join(f"Sentence {p}.{i} ends here." for i in range(30)) for p in range(3)]
    text = "\n\n".join(paras)  # each paragraph is ~750 characters
    passages = split_passages(text, 300, 50)
    assert_well_formed(text, passages, 300)
    for p in passages:
        piece = text[p.start : p.end]
        assert piece.startswith("Sentence") and piece.endswith("here."), piece
    short = "\n\n".join(["A short paragraph that ends here."] * 6)
    packed = split_passages(short, 120, 0)
    assert [text_of(short, p).count("\n\n") for p in packed] == [2, 2]  # 3 whole paragraphs each


def test_a_sentence_without_an_end_in_reach_is_cut_at_whitespace_then_hard():
    words = "word " * 2000
    passages = split_passages(words, 1200, MIN)
    assert_well_formed(words, passages)
    assert all(text_of(words, p).endswith("word") for p in passages)
    blob = "x" * 5000
    hard = split_passages(blob, 1200, MIN)
    assert [p.length for p in hard] == [1200, 1200, 1200, 1200, 200]
    assert sum(p.length for p in hard) == len(blob)


def test_headings_open_the_next_passage():
    body = "The town grew around its harbour. " * 30  # ~1,000 characters
    text = f"{body.strip()}\n\n== History ==\n\n{body.strip()}\n\nEarly years\n\n{body.strip()}"
    passages = split_passages(text, 1200, MIN)
    assert_well_formed(text, passages)
    starts = [text_of(text, p)[:13] for p in passages]
    assert starts == ["The town grew", "== History ==", "Early years\n\n"]
    assert not any(text_of(text, p).endswith(("==", "years")) for p in passages)
    # A heading as the last line of a paragraph (a caption above it) moves on with the next paragraph too.
    inline = f"{body.strip()}\nA caption.\n=== Ports ===\n\n{body.strip()}"
    first, second = split_passages(inline, 1200, MIN)
    assert text_of(inline, first).endswith("A caption.") and text_of(inline, second).startswith("=== Ports")


def test_real_passages_rarely_end_on_a_heading(long_articles):
    ends = [
        text[p.start : p.end].rsplit("\n", 1)[-1]
        for text in long_articles
        for p in split_passages(text, MAX, MIN)[:-1]
    ]
    on_heading = [e for e in ends if re.fullmatch(r"=+[^=]+=+", e.strip())]
    assert len(on_heading) <= 0.002 * len(ends), on_heading  # only where moving it would leave < MIN


def test_short_passages_merge_with_a_neighbour_or_borrow_from_it():
    text = "First sentence here. " * 55 + "\n\nA short tail."
    merged = split_passages(text, 1400, MIN)
    assert len(merged) == 1  # the tail fits into the previous passage
    tight = split_passages(text, 1160, MIN)
    assert_well_formed(text, tight, 1160)
    assert len(tight) == 2 and all(p.length >= MIN for p in tight)  # the boundary moved back
    assert text_of(text, tight[1]).endswith("A short tail.")


def test_tiny_documents_give_one_passage():
    assert split_passages("Just one sentence.", MAX, MIN) == [Passage(0, 0, 18)]
    text = "  \n\n  A small document with two sentences. It has a title line above.\n\n"
    (only,) = split_passages(text, MAX, MIN)
    assert text_of(text, only) == text.strip()


@pytest.mark.parametrize("text", ["", " ", "   \n\n  \r\n\t", "\n" * 100])
def test_empty_and_whitespace_inputs_give_no_passage(text):
    assert split_passages(text, MAX, MIN) == []


@pytest.mark.parametrize(
    "text",
    [
        "Line one is a sentence.\r\n\r\nLine two is another one.\r\n" * 100,  # CRLF paragraphs
        "no punctuation at all just words and more words " * 200,
        "中文句子没有空格。" * 500,  # CJK: sentence ends without spaces
        "Ça coûte cher à Zürich. Ünïcödé façade naïve résumé. " * 100,
        "e\u0301" * 3000,  # combining accents, no whitespace: hard cuts keep base + accent together
        "🙂 emoji sentence one. " * 300,
        "A" * 3_000_000,  # one huge line
    ],
)
def test_awkward_inputs_stay_verbatim_and_within_the_limit(text):
    passages = split_passages(text, MAX, MIN)
    assert_well_formed(text, passages)
    assert text_share(text, passages) == pytest.approx(1.0)


def test_crlf_paragraph_breaks_are_paragraph_boundaries():
    text = "\r\n\r\n".join(["Alpha paragraph. " * 40, "Beta paragraph. " * 40])
    passages = split_passages(text, 1000, MIN)
    assert [text_of(text, p)[:4] for p in passages] == ["Alph", "Beta"]
    assert not any("\r" in text_of(text, p)[-2:] for p in passages)


def test_combining_marks_are_not_split_from_their_base():
    text = "e\u0301" * 3000
    for p in split_passages(text, 1201, MIN):
        assert text[p.start] == "e" and text[p.end - 1] == "\u0301"


def test_limit_cuts_a_huge_source_without_copying_it():
    text = ("A sentence of the huge document. " * 40 + "\n\n") * 2000  # ~2.7 M characters
    limit = source_limit(text, 1_000_000, MAX)
    assert limit is not None and 1_000_000 - MAX <= limit <= 1_000_000
    passages = split_passages(text, MAX, MIN, limit=limit)
    assert_well_formed(text[:limit], passages)
    assert passages[-1].end <= limit and text_of(text, passages[-1]).endswith("document.")
    assert source_limit("short", 10, MAX) is None


def test_sample_keeps_the_lead_and_is_deterministic():
    indices = list(range(40))
    a = sample_passages(indices, 3, seed=0, doc_id="doc1")
    assert a[0] == 0 and len(set(a)) == 3 and a == sample_passages(indices, 3, seed=0, doc_id="doc1")
    others = {tuple(sample_passages(indices, 3, seed=s, doc_id=d)) for s in range(3) for d in "xyz"}
    assert len(others) > 1  # seed and document both move the choice
    assert sample_passages(indices, 0, 0, "d") == indices  # 0 = all
    assert sample_passages([0, 1], 2, 0, "d") == [0, 1]
    assert sample_passages([0], 2, 0, "d") == [0]


def test_passage_ids():
    assert passage_doc_id("abc", 0, 1) == "abc"
    assert passage_doc_id("abc", 7, 12) == "abc-007"


def text_of(text: str, p: Passage) -> str:
    return text[p.start : p.end]


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_are_always_well_formed(seed):
    import random

    rng = random.Random(seed)
    atoms = ["word", "Word.", "end!", " ", " ", "\n", "\n\n", "\r\n\r\n", "== H ==", "é", "中。", "x" * 50]
    text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 3000)))
    max_chars = rng.choice([1, 7, 60, 300, 1200])
    passages = split_passages(text, max_chars, rng.choice([0, 20, 200]))
    assert_well_formed(text, passages, max_chars)


def test_a_fallback_title_is_told_from_a_real_one():
    assert is_fallback_title(fallback_title("lee-news-001", 6), "lee-news-001")
    assert not is_fallback_title("lee-news-001 #6", "lee-news-002")  # another shard's placeholder is a title
    assert not is_fallback_title("Symphony #5", "lee-news-001")
    assert not is_fallback_title("lee-news-001 #six", "lee-news-001")
