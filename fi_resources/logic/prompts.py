"""Prompts of the students and the teacher's LM calls, plus small text helpers (no model imports)."""

from __future__ import annotations

import re
import zlib

from fi_resources.logic.answer_kind import passage_has_answer_shape

PROMPT_VERSION = "v1"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9“\"(])|\n+")


def split_sentences(text: str, min_chars: int = 25) -> list[tuple[int, int]]:
    """Character spans of sentences (end exclusive), skipping fragments shorter than min_chars."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= min_chars:
            out.append((s, e))
    return out


def genericizer_prompt(query: str) -> str:
    """The student genericizer sees the bare query (as the released model does) behind a short header."""
    return f"Query: {query}\nTemplate JSON:"


def instantiator_prompt(template: str, document: str) -> str:
    return f"Template: {template}\nDocument: {document}\nOutput:"


def describe_document_prompt(title: str, text: str, max_chars: int = 700) -> str:
    return f"Title: {title}\nText: {text[:max_chars]}\n\nIn one sentence, what is this text about?"


# What a document description falls back to when the model writes nothing usable.
FALLBACK_DESCRIPTION_PREFIX = "An encyclopedia article about"


def clean_description(title: str, completion: str) -> str | None:
    """First sentence of the model's description, or None if it is empty or chatter."""
    sent = completion.strip().split("\n")[0]
    sent = re.split(r"(?<=[.!?])\s", sent)[0].strip()
    if len(sent) < 20 or sent.lower().startswith(("i ", "i'm", "sorry", "what a")):
        return None
    return sent if sent.endswith(".") else sent + "."


def judge_contexts(instruction: str) -> tuple[str, str]:
    """Contexts for the likelihood judge: with and without the instruction, same answer after them."""
    return f"Instruction: {instruction}\n\nAnswer: ", "Answer: "


def render_pair(instruction: str, answer: str) -> str:
    """The paper's training format for one standalone pair."""
    return f"Instruction: {instruction}\n\nAnswer: {answer}"


# Few-shot raw completion: offline-assets.md §8 measured chat-form question writing as unreliable; as a raw
# completion after three worked examples the 135M model writes one search-style question per passage.
QUESTION_WRITER_VERSION = "qw2"
QUESTION_WRITER_SHOTS = (
    ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
     "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.",
     "Who designed the Eiffel Tower?"),
    ("Photosynthesis is the process by which green plants use sunlight to make food from carbon dioxide and "
     "water. It releases oxygen as a by-product.",
     "What does photosynthesis release?"),
    ("Mount Kilimanjaro is a dormant volcano in Tanzania. At 5,895 metres it is the highest mountain in "
     "Africa.",
     "How tall is Mount Kilimanjaro?"),
)  # fmt: skip
_ASK = "Question a reader would search for:"


# Unprimed, the writer opens nearly every question with "What is" (qw1: 50 of 54). A paragraph with a year, a
# count, a name or a place can also answer a "When", "How many", "Who" or "Where" question: priming the
# completion with that opener gets the bank the question forms real searches have.
_OPENER_SHAPES = (("When", "time"), ("How many", "count"), ("Who", "person"), ("Where", "location"))


def question_openers(text: str, max_chars: int = 400, extra: int = 2) -> list[str]:
    """The openers to prime the writer with for one paragraph: "" (unprimed), then up to `extra` of When /
    How many / Who / Where whose kind of answer the paragraph's first `max_chars` characters hold, in an order
    that varies by paragraph so that no opener crowds out the others."""
    shown = text[:max_chars]
    fits = [opener for opener, kind in _OPENER_SHAPES if passage_has_answer_shape(kind, shown)]
    start = zlib.crc32(shown.encode()) % len(fits) if fits else 0
    return ["", *(fits[start:] + fits[:start])[:extra]]


def question_writer_prompt(text: str, max_chars: int = 400, opener: str = "") -> str:
    shots = "".join(f"Text: {t}\n{_ASK} {q}\n\n" for t, q in QUESTION_WRITER_SHOTS)
    return f"{shots}Text: {' '.join(text[:max_chars].split())}\n{_ASK}" + (f" {opener}" if opener else "")


def clean_written_question(completion: str, opener: str = "") -> tuple[str | None, str]:
    """(question, "ok") or (None, reason): the first line (after the opener the prompt ended with), kept when
    it is one short question that is not a worked example."""
    line = completion.strip().split("\n")[0].strip()
    if opener and not line.casefold().startswith(opener.casefold()):
        line = f"{opener} {line}" if line else ""
    if not line:
        return None, "empty"
    if not line.endswith("?") or line.count("?") > 1:
        return None, "not_a_question"
    if not 3 <= len(line.split()) <= 20:
        return None, "bad_length"
    if line in {q for _, q in QUESTION_WRITER_SHOTS}:
        return None, "copied_example"
    return line, "ok"
