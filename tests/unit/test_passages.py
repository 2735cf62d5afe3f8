import pytest

from fi_resources.logic.passages import split_passages, text_share
from fi_resources.sources import lead_document, wikipedia_articles


@pytest.fixture(scope="module")
def articles():
    return [x for _, x in wikipedia_articles() if len(x) > 5000][:20]


def test_passages_are_verbatim_sized_and_cover_long_articles(articles):
    for text in articles:
        passages = split_passages(text, 1200)
        assert [p.index for p in passages] == list(range(len(passages)))
        assert all(p.end - p.start <= 1200 for p in passages)
        assert all(a.end <= b.start for a, b in zip(passages, passages[1:], strict=False))
        assert text_share(text, passages) >= 0.99
        assert text_share(text, passages) > 5 * text_share(text, split_passages(lead_document(text, 1200)))


def test_boundaries_fall_on_paragraphs_or_sentences():
    paras = [" ".join(f"Sentence {p}.{i} ends here." for i in range(30)) for p in range(3)]
    text = "\n\n".join(paras)
    for p in split_passages(text, 300):
        piece = text[p.start : p.end]
        assert piece[0] == "S" and piece.endswith("here."), piece


@pytest.mark.parametrize(
    "text",
    ["", "   \n\n  ", "x" * 5000, ("word " * 2000), "Line one.\r\n\r\nLine two.\r\n", "中文。" * 800],
)
def test_edge_inputs(text):
    passages = split_passages(text, 1200)
    assert all(0 < p.end - p.start <= 1200 for p in passages)
    if text.strip():
        assert text_share(text, passages) == pytest.approx(1.0)
    else:
        assert passages == []
