"""Long documents split into passages sized to the encoder and instantiator windows, on paragraph and sentence
boundaries, instead of keeping only the lead. Each passage is a verbatim slice ``text[start:end]`` of its
document, so a span found in a passage maps back by adding ``start``. Pure text rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]”’]*\s+")


@dataclass(frozen=True)
class Passage:
    index: int
    start: int
    end: int


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pieces(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """A paragraph [start, end) as pieces of at most max_chars: whole sentences, else cut at whitespace."""
    cuts = [m.end() + start for m in _SENTENCE_END.finditer(text[start:end])] + [end]
    out, piece, last = [], start, start  # the open piece starts at `piece`; `last` is its last sentence end
    for cut in cuts:
        if cut - piece > max_chars and last > piece:
            out.append((piece, last))
            piece = last
        while cut - piece > max_chars:  # one sentence longer than the window: cut it at a space
            space = text.rfind(" ", piece + 1, piece + max_chars)
            stop = space if space > piece else piece + max_chars
            out.append((piece, stop))
            piece = stop
        last = cut
    out.append((piece, last))
    return [_trimmed(text, s, e) for s, e in out if text[s:e].strip()]


def split_passages(text: str, max_chars: int = 1200, min_chars: int = 200) -> list[Passage]:
    """Consecutive paragraphs packed into passages of at most `max_chars` characters; a longer paragraph is
    split at sentence ends (at a space when one sentence is longer). Paragraphs (headings too) join the open
    passage while it fits; a last passage under `min_chars` joins the previous one when the two still fit."""
    bounds, pos = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    pieces = [
        p for s, e in bounds if text[s:e].strip() for p in _pieces(text, *_trimmed(text, s, e), max_chars)
    ]
    spans: list[list[int]] = []
    for s, e in pieces:
        if spans and e - spans[-1][0] <= max_chars:
            spans[-1][1] = e
            continue
        spans.append([s, e])
    if (
        len(spans) > 1
        and spans[-1][1] - spans[-1][0] < min_chars
        and spans[-1][1] - spans[-2][0] <= max_chars
    ):
        spans[-2][1] = spans.pop()[1]
    return [Passage(i, s, e) for i, (s, e) in enumerate(spans)]


def text_share(text: str, passages: list[Passage]) -> float:
    """Share of the document's non-space characters inside the passages."""
    total = sum(not c.isspace() for c in text)
    inside = sum(sum(not c.isspace() for c in text[p.start : p.end]) for p in passages)
    return inside / total if total else 0.0
