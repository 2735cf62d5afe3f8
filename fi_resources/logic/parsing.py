"""Robust parsing (and the inverse formatting) of small-model outputs."""

from __future__ import annotations

import json
import re
from typing import Any

_INSTRUCTION_LINE = re.compile(r"^[ \t]*Instruction:", re.MULTILINE)
_ANSWER_LINE = re.compile(r"^[ \t]*Answer:", re.MULTILINE)


class OutputError(ValueError):
    """Model output that cannot be parsed; ``reason`` is a snake_case code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _balanced_object_end(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the object opened at ``text[start]``, or None if unclosed."""
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def extract_json_object(text: str) -> dict[str, Any]:
    """Return the first balanced ``{...}`` in ``text`` that parses as a JSON object.

    Tolerates prose and code fences around the object. Reasons: ``no_json`` (no ``{`` at all),
    ``not_an_object`` (the whole text is JSON but not an object), ``invalid_json`` (otherwise).
    """
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    else:
        if isinstance(whole, dict):
            return whole
    start = text.find("{")
    if start == -1:
        raise OutputError("not_an_object" if whole is not None else "no_json")
    # Braces in surrounding prose ("{like this}") are skipped by trying each opening brace in turn.
    while start != -1:
        end = _balanced_object_end(text, start)
        if end is not None:
            try:
                value = json.loads(text[start:end])
            except ValueError:
                pass
            else:
                if isinstance(value, dict):
                    return value
        start = text.find("{", start + 1)
    raise OutputError("not_an_object" if whole is not None else "invalid_json")


def parse_genericizer_output(text: str) -> tuple[str, str]:
    """Return ``(template, compatible_document_description)`` from the genericizer's JSON output."""
    obj = extract_json_object(text)
    values = []
    for key in ("template", "compatible_document_description"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise OutputError("missing_field", key)
        values.append(value.strip())
    return values[0], values[1]


def format_genericizer_target(template: str, description: str) -> str:
    """The genericizer's training target; :func:`parse_genericizer_output` inverts it."""
    return json.dumps(
        {"template": template, "compatible_document_description": description}, ensure_ascii=False
    )


_MARKUP = re.compile(r"</?(?:fi|excerpt)>|<\.\.\.>", re.IGNORECASE)


def parse_instantiator_output(text: str) -> tuple[str, str] | None:
    """Parse ``null`` (returns None) or ``Instruction: ...`` / ``Answer: ...`` into (instruction, markup).

    The instruction is the text between the ``Instruction:`` and ``Answer:`` lines (normally one line);
    the answer is everything after ``Answer:``, cut where a line starts with ``Instruction:`` (the model
    beginning another pair). Reasons: ``empty_output``, ``missing_instruction``, ``markup_in_instruction``,
    ``missing_answer``.
    """
    stripped = text.strip()
    if not stripped:
        raise OutputError("empty_output")
    if stripped.lower() == "null":
        return None
    instruction_at = _INSTRUCTION_LINE.search(stripped)
    if instruction_at is None:
        raise OutputError("missing_instruction")
    answer_at = _ANSWER_LINE.search(stripped, instruction_at.end())
    if answer_at is None:
        raise OutputError("missing_answer")
    instruction = stripped[instruction_at.end() : answer_at.start()].strip()
    if not instruction:
        raise OutputError("missing_instruction")
    if _MARKUP.search(instruction):
        # The instruction must be plain text: leftover <fi> slots or <excerpt> markers mean a broken fill.
        raise OutputError("markup_in_instruction")
    answer = stripped[answer_at.end() :]
    next_pair = _INSTRUCTION_LINE.search(answer)
    if next_pair is not None:
        answer = answer[: next_pair.start()]
    answer = answer.strip()
    if not answer:
        raise OutputError("missing_answer")
    return instruction, answer


def format_instantiator_target(instruction: str | None, answer_markup: str | None) -> str:
    """The instantiator's training target (``null`` when ``instruction`` is None); inverse of the parser.

    Raises ``ValueError`` for input that would not parse back to itself.
    """
    if instruction is None:
        return "null"
    if answer_markup is None:
        raise ValueError("an instruction needs an answer")
    instruction, answer_markup = instruction.strip(), answer_markup.strip()
    if not instruction or not answer_markup:
        raise ValueError("instruction and answer must be non-empty")
    if _ANSWER_LINE.search(instruction) or _INSTRUCTION_LINE.search(instruction):
        raise ValueError("a line of the instruction starts with 'Answer:' or 'Instruction:'")
    if _INSTRUCTION_LINE.search(answer_markup):
        raise ValueError("a line of the answer starts with 'Instruction:'")
    return f"Instruction: {instruction}\nAnswer: {answer_markup}"
