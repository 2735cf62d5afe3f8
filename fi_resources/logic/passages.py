"""Documents of any length → passages: verbatim, offset-addressed substrings of the source text.

A passage is a span `[start, end)` of the source text, never a rewritten copy, so anything located in a
passage (an excerpt span) maps back to the source document by adding `start`. Passages are packed from
whole paragraphs (blank-line separated) up to `max_chars`; a paragraph too long for one passage is cut at
the last sentence end (or line break) that fits, a sentence with no end in reach at the last whitespace,
and only a run with no whitespace at all is cut hard. Heading lines (`== History ==`, short lines without
sentence punctuation) open the next passage instead of closing the previous one. A passage is not closed
below `min_chars` while more text follows, and a short last passage merges into the previous one (or takes
some of its text) so that retrieval and instantiation never get a fragment as a document.

Everything here works on offsets into the one text (regex searches with `pos`/`endpos`, no splitting into
copies), so a document of millions of characters is held once.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass

# A blank line (CRLF and whitespace-only lines included) and any whitespace after it.
PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# A sentence end: terminal punctuation and closing quotes/brackets before whitespace; CJK full stops need
# no space after them; a line break inside a paragraph (lists, captions) ends a unit as well.
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[」』”’）)]*|\n")
WHITESPACE = re.compile(r"\s+")
HEADING_LINE = re.compile(r"=+[^=\n]+=+")
# Lines ending like this are prose, not headings.
PROSE_END = re.compile(r"[.!?…:;。！？][\"'”’»)\]]*$")
LIST_MARKERS = ("*", "#", ":", ";", "-", "•", "|")
HEADING_MAX_CHARS = 100  # a longer line is prose even without punctuation


@dataclass(frozen=True)
class Passage:
    """`text[start:end]` of the source text; `index` is its position among the document's passages."""

    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def split_passages(text: str, max_chars: int, min_chars: int = 0, limit: int | None = None) -> list[Passage]:
    """The passages of `text[:limit]` (all of it when `limit` is None), each at most `max_chars` long and,
    where the neighbours allow, at least `min_chars`. Whitespace between passages belongs to none; every
    other character of the text is in exactly one passage."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    end = len(text) if limit is None else min(len(text), max(0, limit))
    min_chars = min(max(0, min_chars), max_chars)
    spans = _pack(text, list(_paragraphs(text, end)), max_chars, min_chars)
    spans = _fix_short_tail(text, spans, max_chars, min_chars)
    return [Passage(i, s, e) for i, (s, e) in enumerate(spans)]


def source_limit(text: str, max_source_chars: int, window: int) -> int | None:
    """Where to cut a text longer than `max_source_chars`: the last paragraph, sentence or word boundary in
    the `window` characters before the limit (a hard cut without one); None when the text fits."""
    if len(text) <= max_source_chars:
        return None
    cut = _best_cut(text, max(0, max_source_chars - window), max_source_chars)
    return cut if cut is not None else max_source_chars


def sample_passages(indices: list[int], k: int, seed: int, doc_id: str) -> list[int]:
    """`k` of a document's passage indices (0 = all): the lead (first) passage plus a seeded random choice of
    the others, the same for the same seed and document on every run and machine."""
    if k <= 0 or len(indices) <= k:
        return list(indices)
    lead, rest = indices[0], indices[1:]
    # A string seed goes through SHA-512 in `random`, so it does not depend on PYTHONHASHSEED.
    chosen = random.Random(f"{seed}\x1f{doc_id}").sample(rest, k - 1)
    return [lead, *sorted(chosen)]


def passage_doc_id(parent: str, index: int, n_passages: int) -> str:
    """The id downstream assets know a passage by: the parent's id for a single-passage document."""
    return parent if n_passages == 1 else f"{parent}-{index:03d}"


def fallback_title(shard_stem: str, row: int) -> str:
    """The title a row without one is shown under: its shard and row number ("lee-news-001 #6")."""
    return f"{shard_stem} #{row}"


def is_fallback_title(title: str, shard: str) -> bool:
    """Is `title` the placeholder `fallback_title` gave an untitled row of `shard`? It names no subject."""
    head, sep, row = title.rpartition(" #")
    return bool(sep) and head == shard and row.isdigit()


def _is_heading_line(line: str) -> bool:
    if HEADING_LINE.fullmatch(line):
        return True
    if line.startswith(LIST_MARKERS):  # list items are content, even when short and unpunctuated
        return False
    return len(line) <= HEADING_MAX_CHARS and not PROSE_END.search(line)


def _paragraphs(text: str, end: int):
    """Trimmed (start, end) spans of the non-blank paragraphs of `text[:end]`."""
    pos = 0
    for m in PARAGRAPH_BREAK.finditer(text, 0, end):
        span = _trim(text, pos, m.start())
        if span:
            yield span
        pos = m.end()
    span = _trim(text, pos, end)
    if span:
        yield span


def _pack(
    text: str, paragraphs: list[tuple[int, int]], max_chars: int, min_chars: int
) -> list[tuple[int, int]]:
    """Greedy packing of paragraphs into passages; a paragraph that cannot fit is cut inside."""
    out: list[tuple[int, int]] = []
    s = e = -1  # the open passage [s, e); none while s < 0
    for ps, pe in paragraphs:
        if s >= 0 and pe - s <= max_chars:
            e = pe
            continue
        if s < 0:
            s = ps
        elif e - s >= min_chars:
            # Close at the paragraph boundary, carrying trailing headings over to the text they head.
            close = _before_headings(text, s, e, min_chars)
            out.append((s, _trim_end(text, s, close)))
            s = _skip_space(text, close, ps)
        # Else the open passage is too short to close: it takes in the start of this paragraph.
        s = _cut_until_fits(text, s, pe, max_chars, min_chars, out)
        e = pe
    if s >= 0:
        out.append((s, e))
    return out


def _cut_until_fits(
    text: str, s: int, end: int, max_chars: int, min_chars: int, out: list[tuple[int, int]]
) -> int:
    """Cut passages off `[s, end)` into `out` until the rest fits in `max_chars`; returns the rest's start."""
    while end - s > max_chars:
        hi = s + max_chars
        best = _best_cut(text, s + min_chars, hi) or s
        cut = _before_headings(text, s, best, min_chars) if best > s else _hard_cut(text, s, hi)
        piece = _trim(text, s, cut)
        if piece:
            out.append(piece)
        s = _skip_space(text, cut, end)
    return s


def _best_cut(text: str, lo: int, hi: int) -> int | None:
    """The best place to end a passage inside `[lo, hi]`: the last paragraph break, else the last sentence
    end or line break, else the last whitespace. Passages prefer to be at least `min_chars`, which is why
    callers pass `lo = start + min_chars`: a later word boundary beats an early sentence end that would
    leave a fragment too short to be a document."""
    lo = max(0, lo)
    for pattern, at_end in ((PARAGRAPH_BREAK, False), (SENTENCE_END, True), (WHITESPACE, False)):
        # endpos one past hi so that lookaheads see the character after a candidate end at hi.
        cut = _last_boundary(pattern, text, lo, hi, at_end)
        if cut is not None:
            return cut
    return None


def _last_boundary(pattern: re.Pattern, text: str, lo: int, hi: int, at_end: bool) -> int | None:
    last = None
    search_from = max(0, lo - 8) if at_end else lo  # a sentence end's punctuation may start before lo
    for m in pattern.finditer(text, search_from, min(len(text), hi + 1)):
        cut = m.end() if at_end else m.start()
        if lo <= cut <= hi and cut > 0:
            last = cut
    return last


def _before_headings(text: str, start: int, cut: int, min_chars: int) -> int:
    """`cut` moved back before the heading lines that would otherwise end the passage `[start, cut)`, so
    they open the next one; never so far that the passage gets shorter than `min_chars`."""
    while True:
        end = _trim_end(text, start, cut)
        line_start = text.rfind("\n", max(start, end - HEADING_MAX_CHARS - 1), end) + 1
        if line_start <= start or not _is_heading_line(text[line_start:end].strip()):
            return cut
        if _trim_end(text, start, line_start) - start < min_chars:
            return cut
        cut = line_start


def _hard_cut(text: str, s: int, hi: int) -> int:
    """A cut at `hi` moved back off combining marks, so a base character keeps its accents."""
    cut = hi
    while cut > s + 1 and unicodedata.combining(text[cut]):
        cut -= 1
    return cut


def _fix_short_tail(
    text: str, spans: list[tuple[int, int]], max_chars: int, min_chars: int
) -> list[tuple[int, int]]:
    """Packing leaves at most the last passage short: merge it into the previous one when both fit, else
    move their boundary back so that both reach `min_chars`."""
    if len(spans) < 2 or spans[-1][1] - spans[-1][0] >= min_chars:
        return spans
    a, d = spans[-2][0], spans[-1][1]
    if d - a <= max_chars:
        return [*spans[:-2], (a, d)]
    cut = _best_cut(text, max(a + min_chars, d - max_chars), d - min_chars)
    if cut is None:
        return spans
    cut = _before_headings(text, a, cut, min_chars)
    first, second = _trim(text, a, cut), _trim(text, cut, d)
    if not first or not second:
        return spans
    return [*spans[:-2], first, second]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`[start, end)` without leading and trailing whitespace (offsets move, the text does not); None if
    nothing is left."""
    start = _skip_space(text, start, end)
    end = _trim_end(text, start, end)
    return (start, end) if end > start else None


def _trim_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _skip_space(text: str, pos: int, end: int) -> int:
    while pos < end and text[pos].isspace():
        pos += 1
    return pos


def text_share(text: str, passages: list[Passage]) -> float:
    """Share of the document's non-space characters inside the passages (whitespace between passages
    belongs to none, so this is 1.0 for a split that loses nothing)."""
    total = sum(not c.isspace() for c in text)
    inside = sum(sum(not c.isspace() for c in text[p.start : p.end]) for p in passages)
    return inside / total if total else 0.0
