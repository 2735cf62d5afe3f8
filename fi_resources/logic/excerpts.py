"""Excerpt markers: ``<excerpt>PREFIX<...>SUFFIX</excerpt>`` expanded into exact document spans."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

EXCERPT_OPEN = "<excerpt>"
EXCERPT_CLOSE = "</excerpt>"
ELLIPSIS = "<...>"

_MARKUP_RE = re.compile(re.escape(EXCERPT_OPEN) + "|" + re.escape(EXCERPT_CLOSE))
# What is left of a tag the model mistyped ("</excerpt]", "<excerpt >", "excerpt>") or an ellipsis outside
# a marker: glue text holding one is broken markup, not prose to keep in the answer.
_BROKEN_TAG_RE = re.compile(r"</?\s*excerpt|excerpt\s*/?\s*>|<\.\.\.>", re.IGNORECASE)


class ExcerptError(ValueError):
    """A marker (or answer) that cannot be expanded; ``reason`` is a snake_case code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ExpandedAnswer:
    """An answer with every marker replaced by its document span.

    ``doc_spans`` are ``(start, end)`` character spans in the original document (end exclusive), and
    ``answer_spans`` the matching spans in ``text``. ``excerpt_chars`` counts the non-whitespace
    characters of ``text`` that come from excerpts; ``grounding_ratio`` divides it by all non-whitespace
    characters of ``text`` (whitespace is ignored so glue spacing cannot move the ratio).
    """

    text: str
    doc_spans: tuple[tuple[int, int], ...]
    answer_spans: tuple[tuple[int, int], ...]
    excerpt_chars: int
    grounding_ratio: float


class _NormalisedDocument:
    """The document with whitespace runs collapsed to one space, plus a map back to original offsets."""

    def __init__(self, document: str) -> None:
        chars: list[str] = []
        origin: list[int] = []
        in_space = False
        for i, ch in enumerate(document):
            if ch.isspace():
                if not in_space:
                    chars.append(" ")
                    origin.append(i)
                in_space = True
            else:
                chars.append(ch)
                origin.append(i)
                in_space = False
        self.text = "".join(chars)
        self._origin = origin

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        # Matched needles never start or end with whitespace, so both ends map to real characters.
        return self._origin[start], self._origin[end - 1] + 1


def _occurrences(haystack: str, needle: str) -> list[int]:
    """All (possibly overlapping) start offsets of ``needle`` in ``haystack``."""
    found: list[int] = []
    i = haystack.find(needle)
    while i != -1:
        found.append(i)
        i = haystack.find(needle, i + 1)
    return found


def _collapse(text: str) -> str:
    return " ".join(text.split())


def locate_marker(body: str, text: str, max_span_chars: int = 4000) -> tuple[int, int]:
    """The span of whitespace-collapsed ``text`` that one marker body (between the excerpt tags) names;
    raises :class:`ExcerptError` when it names none or several."""
    if ELLIPSIS not in body:
        needle = _collapse(body)
        if not needle:
            raise ExcerptError("empty_excerpt")
        starts = _occurrences(text, needle)
        if not starts:
            raise ExcerptError("unknown_excerpt", f"not in document: {needle[:40]!r}")
        if len(starts) > 1:
            raise ExcerptError("ambiguous_excerpt", f"{len(starts)} occurrences of {needle[:40]!r}")
        return starts[0], starts[0] + len(needle)

    prefix_raw, suffix_raw = body.split(ELLIPSIS, 1)
    prefix, suffix = _collapse(prefix_raw), _collapse(suffix_raw)
    if not prefix or not suffix:
        raise ExcerptError("empty_excerpt", "prefix or suffix is empty")
    if ELLIPSIS in suffix:
        raise ExcerptError("unknown_excerpt", f"more than one {ELLIPSIS} in a marker")
    spans: set[tuple[int, int]] = set()
    for start in _occurrences(text, prefix):
        # Shortest span for this prefix occurrence: the first suffix at or after the prefix end.
        suffix_at = text.find(suffix, start + len(prefix))
        if suffix_at != -1 and suffix_at + len(suffix) - start <= max_span_chars:
            spans.add((start, suffix_at + len(suffix)))
    if not spans:
        raise ExcerptError("unknown_excerpt", f"no span {prefix[:30]!r} ... {suffix[-30:]!r}")
    if len(spans) > 1:
        raise ExcerptError("ambiguous_excerpt", f"{len(spans)} spans for {prefix[:30]!r} ...")
    return spans.pop()


def _split_markup(markup: str) -> list[tuple[bool, str]]:
    """Split into ``(is_excerpt, text)`` pieces, checking that the excerpt tags are balanced."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    open_at: int | None = None
    for match in _MARKUP_RE.finditer(markup):
        if match.group(0) == EXCERPT_OPEN:
            if open_at is not None:
                raise ExcerptError("unbalanced_excerpt_tags", f"nested {EXCERPT_OPEN} at {match.start()}")
            pieces.append((False, markup[pos : match.start()]))
            open_at = match.end()
        else:
            if open_at is None:
                raise ExcerptError("unbalanced_excerpt_tags", f"stray {EXCERPT_CLOSE} at {match.start()}")
            pieces.append((True, markup[open_at : match.start()]))
            open_at = None
        pos = match.end()
    if open_at is not None:
        raise ExcerptError("unbalanced_excerpt_tags", f"unclosed {EXCERPT_OPEN}")
    pieces.append((False, markup[pos:]))
    return pieces


def _non_space(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def expand_excerpts(markup: str, document: str, max_span_chars: int = 4000) -> ExpandedAnswer:
    """Expand every excerpt marker in ``markup`` into its exact span of ``document``.

    ``PREFIX<...>SUFFIX`` selects, for each occurrence of PREFIX, the shortest span ending with SUFFIX
    (SUFFIX starting at or after the end of PREFIX, span at most ``max_span_chars`` normalised
    characters); all occurrences must agree on one span. A marker without ``<...>`` must occur exactly
    once verbatim. Matching is exact after collapsing whitespace runs; prefix and suffix are stripped.
    Glue text is kept verbatim, except that the answer is stripped and a space separates two excerpts
    with no glue between them. Raises :class:`ExcerptError` for the first bad marker.
    """
    doc = _NormalisedDocument(document)
    parts: list[str] = []
    length = 0
    doc_spans: list[tuple[int, int]] = []
    answer_spans: list[tuple[int, int]] = []
    pieces = _split_markup(markup)
    last = len(pieces) - 1
    previous_was_excerpt = False
    for index, (is_excerpt, piece) in enumerate(pieces):
        if not is_excerpt:
            glue = piece.lstrip() if index == 0 else piece
            glue = glue.rstrip() if index == last else glue
            broken = _BROKEN_TAG_RE.search(glue)
            if broken:
                raise ExcerptError("malformed_excerpt_tag", f"{broken.group(0)!r} outside a marker")
            parts.append(glue)
            length += len(glue)
            previous_was_excerpt = previous_was_excerpt and not glue
            continue
        start, end = doc.to_original(*locate_marker(piece, doc.text, max_span_chars))
        if previous_was_excerpt:
            parts.append(" ")
            length += 1
        doc_spans.append((start, end))
        answer_spans.append((length, length + end - start))
        parts.append(document[start:end])
        length += end - start
        previous_was_excerpt = True

    text = "".join(parts)
    total = _non_space(text)
    if total == 0:
        raise ExcerptError("empty_answer")
    excerpt_chars = sum(_non_space(text[a:b]) for a, b in answer_spans)
    return ExpandedAnswer(
        text=text,
        doc_spans=tuple(doc_spans),
        answer_spans=tuple(answer_spans),
        excerpt_chars=excerpt_chars,
        grounding_ratio=excerpt_chars / total,
    )


# A sentence end in a document: closing punctuation (and any closing quotes/brackets) before a space or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")
# How a finished text ends, before any trailing space: closing punctuation, a bracket, a quote, a code fence.
# One list for the judge's fragment flag (`rubric.is_fragment`) and for `finish_last_sentence`, which also
# leaves an excerpt that ends on ':' as it is.
FINISHED_ENDINGS = ".!?)]\"'”’`"
_FINISHED = re.compile(f"[{re.escape(FINISHED_ENDINGS + ':')}]\\s*$")


def finish_last_sentence(answer: ExpandedAnswer, document: str, max_extra_chars: int) -> ExpandedAnswer:
    """`answer` with its final excerpt run on to the end of its sentence in `document`, when the answer ends
    with that excerpt mid-sentence and the sentence ends within `max_extra_chars` in the same paragraph.

    A small student often closes an excerpt a few words early ("…until his assassination in"); the words it
    meant are in the document, so the program finishes the sentence instead of keeping a fragment. Anything
    else (glue after the last excerpt, a finished excerpt, no sentence end near) returns `answer` unchanged.
    """
    if not answer.answer_spans or max_extra_chars <= 0 or answer.answer_spans[-1][1] != len(answer.text):
        return answer
    start, end = answer.doc_spans[-1]
    if _FINISHED.search(document[start:end]):
        return answer
    found = _SENTENCE_END.search(document, end, min(len(document), end + max_extra_chars))
    if found is None or "\n\n" in document[end : found.end()]:
        return answer
    extra = document[end : found.end()]
    text = answer.text + extra
    excerpt_chars = answer.excerpt_chars + _non_space(extra)
    a_start, a_end = answer.answer_spans[-1]
    return ExpandedAnswer(
        text=text,
        doc_spans=(*answer.doc_spans[:-1], (start, found.end())),
        answer_spans=(*answer.answer_spans[:-1], (a_start, a_end + len(extra))),
        excerpt_chars=excerpt_chars,
        grounding_ratio=excerpt_chars / _non_space(text),
    )


def make_excerpt_marker(
    document: str, start: int, end: int, words: int = 4, max_span_chars: int = 4000
) -> str:
    """Shortest marker (from ``words`` words per side upwards) that expands to ``document[start:end]``.

    Falls back to the literal excerpt once prefix and suffix would cover the whole span. Raises
    ``ValueError`` for an empty span, one with surrounding whitespace (markers cannot express it), or one
    whose text also occurs elsewhere in the document (no marker identifies it uniquely).
    """
    if not 0 <= start < end <= len(document):
        raise ValueError(f"bad span ({start}, {end}) for a document of {len(document)} chars")
    span = document[start:end]
    if span != span.strip():
        raise ValueError("span starts or ends with whitespace")
    tokens = span.split()
    n = max(1, words)
    while 2 * n < len(tokens):
        body = f"{' '.join(tokens[:n])}{ELLIPSIS}{' '.join(tokens[-n:])}"
        marker = f"{EXCERPT_OPEN}{body}{EXCERPT_CLOSE}"
        try:
            if expand_excerpts(marker, document, max_span_chars).doc_spans == ((start, end),):
                return marker
        except ExcerptError:
            pass
        n += 1
    marker = f"{EXCERPT_OPEN}{' '.join(tokens)}{EXCERPT_CLOSE}"
    try:
        if expand_excerpts(marker, document, max_span_chars).doc_spans == ((start, end),):
            return marker
    except ExcerptError:
        pass
    raise ValueError("span is not uniquely identifiable in the document")


def count_marker_chars(markup: str) -> int:
    """Characters the model must decode for ``markup`` (compare with the expanded text's length)."""
    return len(markup)


def widen_to_sentences(
    sentences: Sequence[tuple[int, int]], start: int, end: int, max_chars: int
) -> tuple[int, int]:
    """Extend the span ``[start, end)`` over the sentences that follow it while it stays within ``max_chars``.

    The paper's answers are long verbatim passages; a one-sentence excerpt costs its markup tokens for little
    copied text, so a wider span is what makes copying cheaper than decoding (see bench/bench_excerpts.py).
    """
    for s, e in sentences:
        if s >= end and e - start <= max_chars:
            end = e
        elif s >= end:
            break
    return start, end


def answer_span(markup: str | None, text: str) -> tuple[int, int]:
    """Character span (first start, last end) of an answer's excerpts in the text, (-1, -1) if none."""
    if not markup:
        return -1, -1
    try:
        spans = expand_excerpts(markup, text).doc_spans
    except ExcerptError:
        return -1, -1
    return (spans[0][0], spans[-1][1]) if spans else (-1, -1)
