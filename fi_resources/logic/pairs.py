"""Model output → an instruction–answer pair, or the reason there is none. The one place that parses an
instantiator's output, expands its `<excerpt>` markers from the document and checks grounding: the
instantiated pairs and the judge check set read outputs through it (retrieval takes its answer spans from
the teacher's compatibility labels, which need no parsing)."""

from __future__ import annotations

from dataclasses import dataclass

from fi_resources.logic.excerpts import ExcerptError, expand_excerpts, finish_last_sentence
from fi_resources.logic.parsing import OutputError, parse_instantiator_output


@dataclass(frozen=True)
class ReadPair:
    """`status` is "ok", "refused_null", "low_grounding" or a parse/expansion reason; the other fields are
    filled as far as reading got (a low-grounding pair keeps its expanded answer)."""

    status: str
    instruction: str | None = None
    answer_markup: str | None = None
    answer: str | None = None
    doc_spans: tuple[tuple[int, int], ...] = ()
    grounding_ratio: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def read_pair(
    output: str, document: str, min_grounding: float = 0.0, finish_sentence_chars: int = 0
) -> ReadPair:
    """Parse `output` (``Instruction: … / Answer: …`` with excerpt markers, or ``null``), expand the answer
    from `document` (an answer ending mid-sentence in its last excerpt runs on to the sentence's end within
    `finish_sentence_chars`, `excerpts.finish_last_sentence`), and require at least `min_grounding` of it
    copied from the document."""
    try:
        parsed = parse_instantiator_output(output)
    except OutputError as exc:
        return ReadPair(exc.reason)
    if parsed is None:
        return ReadPair("refused_null")
    instruction, markup = parsed
    try:
        expanded = expand_excerpts(markup, document)
    except ExcerptError as exc:
        return ReadPair(exc.reason, instruction, markup)
    expanded = finish_last_sentence(expanded, document, finish_sentence_chars)
    status = "low_grounding" if expanded.grounding_ratio < min_grounding else "ok"
    return ReadPair(
        status, instruction, markup, expanded.text, tuple(expanded.doc_spans), expanded.grounding_ratio
    )
