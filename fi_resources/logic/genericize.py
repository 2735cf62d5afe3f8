"""Programmatic genericization: find the specific parts of a query that a template should abstract.

This is the structural half of the embedded (weak-supervision) teacher: spans are found by rules, and a
small LM only names each span's type ("falafel" → "food"), which it does well. A large-LLM teacher (the
`paper` profile) replaces all of this with one prompt; the output contract stays the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "where", "when", "why", "how", "is", "are", "was", "were", "do",
    "does", "did", "can", "could", "will", "would", "should", "in", "on", "if", "a", "an", "the", "i", "hi",
    "hello", "tell", "name", "please", "apple’s", "according", "during", "at", "by", "for", "from", "of",
}  # fmt: skip
STOP_OBJECTS = {
    "you",
    "it",
    "that",
    "this",
    "them",
    "me",
    "us",
    "him",
    "her",
    "life",
    "today",
    "now",
    "there",
}

_QUOTED = re.compile(r"[“\"]([^”\"]{2,60})[”\"]|(?<![\w’'])'([^']{2,60})'(?![\w])")
_CAPS = re.compile(
    r"\b(?:[A-Z][\w’'.&-]*|[A-Z]\.)(?:\s+(?:of|the|de|vs\.|and|for)?\s*(?:[A-Z][\w’'.&-]*|\d+))*"
)
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_TASK_OBJECT = re.compile(
    r"\b(?:write|explain|describe|define|implement|make)\s+(an?\s+[a-z][\w -]{2,40}?)(?=\s+(?:in|for|with)\s|\?|$)"
)
_TRAILING_OBJECT = re.compile(
    r"\b(?:of|in|about|for|on|from)\s+((?:the\s+)?[a-z][a-z-]{2,}(?:\s+[a-z][a-z-]{2,})?)\s*\?\s*$"
)


_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=\s))(?:a|an|the)\s+$", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str
    kind: str  # quoted | name | year | object


def _overlaps(a: Span, spans: list[Span]) -> bool:
    return any(a.start < s.end and s.start < a.end for s in spans)


def find_specific_spans(query: str, max_spans: int = 4) -> list[Span]:
    """Spans to abstract, in text order: quoted titles, proper names, years, task objects, trailing objects."""
    spans: list[Span] = []

    def add(start: int, end: int, kind: str) -> None:
        text = re.sub(r"[’']s$", "", query[start:end].strip(" ,.")).strip(" ,.’'")
        if not text:
            return
        start = query.index(text, start)
        span = Span(start, start + len(text), text, kind)
        if not _overlaps(span, spans):
            spans.append(span)

    for m in _QUOTED.finditer(query):
        g = 1 if m.group(1) else 2
        add(m.start(g), m.end(g), "quoted")
    for m in _CAPS.finditer(query):
        words = m.group(0).split()
        # Skip a sentence-initial question word ("What", "Which President" → "President").
        while words and words[0].lower() in QUESTION_WORDS:
            words = words[1:]
        if not words:
            continue
        text = " ".join(words)
        start = query.index(words[0], m.start())
        if text.lower() in QUESTION_WORDS or (start == 0 and len(words) == 1):
            continue
        add(start, start + len(text), "name")
    for m in _YEAR.finditer(query):
        add(m.start(1), m.end(1), "year")
    for m in _TASK_OBJECT.finditer(query):
        add(m.start(1), m.end(1), "object")
    if not spans:
        m = _TRAILING_OBJECT.search(query)
        if m and m.group(1).split()[-1] not in STOP_OBJECTS:
            add(m.start(1), m.end(1), "object")
    spans.sort(key=lambda s: s.start)
    return spans[:max_spans]


def type_prompt(entity: str) -> str:
    """A few-shot completion the 135M model answers well (offline-assets.md §8)."""
    return (
        "Paris is a kind of city.\nThe Beatles is a kind of band.\nMount Everest is a kind of mountain.\n"
        f"{entity} is a kind of"
    )


_TYPE_WORD = re.compile(r"^\s*([a-z][a-z -]{1,30}?)\s*[.\n]")


def parse_type_completion(completion: str) -> str | None:
    """'food.\\nThe Beat' → 'food'; anything that is not one to three lowercase words → None."""
    m = _TYPE_WORD.match(completion + "\n")
    if not m:
        return None
    words = m.group(1).split()
    if not 1 <= len(words) <= 3 or words[0] in {"the", "a", "an", "kind"}:
        return None
    return " ".join(words)


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def slot_description(span: Span, type_word: str | None) -> str:
    if span.kind == "year":
        return "a year"
    if type_word:
        return with_article(type_word)
    return {"quoted": "a title", "object": "a thing"}.get(span.kind, "a specific entity")


def build_template(query: str, spans: list[Span], descriptions: list[str]) -> str:
    """Replace each span with <fi>description</fi>, keeping the rest of the query verbatim."""
    out, pos = [], 0
    for span, desc in zip(spans, descriptions, strict=True):
        before = query[pos : span.start]
        # "a Flask API" → "<fi>a web framework</fi> API", not "a <fi>a web framework</fi> API".
        article = _ARTICLE_BEFORE.search(before)
        if article and desc.startswith(("a ", "an ")):
            before = before[: article.start()]
        out.append(before)
        out.append(f"<fi>{desc}</fi>")
        pos = span.end
    out.append(query[pos:])
    return "".join(out).strip()


def describe_compatible_documents(template_literal: str, descriptions: list[str]) -> str:
    """The compatible-document description indexed for retrieval (what a document must contain)."""
    subjects = ", ".join(dict.fromkeys(descriptions))
    ask = template_literal.rstrip("?").strip()
    return f"A document about {subjects} that contains the facts needed to answer: {ask}?"
