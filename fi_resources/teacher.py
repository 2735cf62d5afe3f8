"""The embedded profile's weak-supervision teacher (the judge lives in fi_resources/judge.py).

The teacher writes the silver data that the students are fine-tuned on. Structure (spans, tags, excerpt
choice) is done in code; the small LM supplies what it is good at (type words, one-sentence document
descriptions) and the encoder supplies similarity. A large-LLM teacher can replace it behind the same
methods.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np

from fi_resources.encoder import Encoder
from fi_resources.logic import genericize as gz
from fi_resources.logic.excerpts import answer_span, make_excerpt_marker, widen_to_sentences
from fi_resources.logic.prompts import (
    FALLBACK_DESCRIPTION_PREFIX,
    clean_description,
    describe_document_prompt,
    split_sentences,
)
from fi_resources.logic.templates import Template, fill_template, template_literal, validate_template
from fi_resources.parts import (
    CompatibilityLabel,
    Progress,
    SilverInstantiation,
    SilverTemplate,
    TextGenerator,
)

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=512)
def document_sentences(document: str) -> tuple[tuple[int, int], ...]:
    """Sentence spans of a document. Cached: one document is instantiated with several templates."""
    return tuple(split_sentences(document))


@functools.lru_cache(maxsize=512)
def document_parts(document: str) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    """Answer windows (single sentences and adjacent pairs under 600 chars) and candidate slot fillers of a
    document. Cached like its sentences."""
    sentences = document_sentences(document)
    windows = list(sentences) + [
        (a[0], b[1]) for a, b in zip(sentences, sentences[1:], strict=False) if b[1] - a[0] < 600
    ]
    # Names per sentence, so a span never runs across a sentence boundary ("Earth. Specifically").
    names = [span.text for s, e in sentences for span in gz.find_specific_spans(document[s:e], max_spans=12)]
    return tuple(windows), tuple(names)


class WeakSupervisionTeacher:
    """Teacher = rules + small LM + encoder (see module docstring). Does all four teacher jobs
    (`fi_resources.parts`): genericize, describe, label compatibility, instantiate."""

    name = "weak-supervision-teacher/v2"

    def __init__(
        self,
        lm: TextGenerator,
        encoder: Encoder,
        fill_threshold: float = 0.15,
        answer_threshold: float = 0.3,
        answer_chars: int = 480,
    ):
        self.lm = lm
        self.encoder = encoder
        self.fill_threshold = fill_threshold
        self.answer_threshold = answer_threshold
        # The answer: the best-matching window widened over the next sentences up to this many characters.
        self.answer_chars = answer_chars
        self._emb: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encoder embeddings, memoised: one document is paired with many templates."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._emb))
        if missing:
            self._emb.update(zip(missing, self.encoder.encode(missing), strict=True))
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.stack([self._emb[t] for t in texts])

    # ---- stage 1: templates -------------------------------------------------------------------
    def genericize(self, queries: Sequence[str], progress: Progress | None = None) -> list[SilverTemplate]:
        spans = [gz.find_specific_spans(q) for q in queries]
        to_type = sorted({s.text for ss in spans for s in ss if s.kind != "year"})
        completions = self.lm.generate(
            [gz.type_prompt(e) for e in to_type], max_new_tokens=5, progress=progress
        )
        types = {e: gz.parse_type_completion(c) for e, c in zip(to_type, completions, strict=True)}
        out = []
        for query, ss in zip(queries, spans, strict=True):
            if not ss:
                out.append(SilverTemplate(query, None, None, "no_specific_span"))
                continue
            descs = [gz.slot_description(s, types.get(s.text)) for s in ss]
            text = gz.build_template(query, ss, descs)
            template, reason = validate_template(text, query)
            if template is None:
                out.append(SilverTemplate(query, None, None, reason))
                continue
            description = gz.describe_compatible_documents(template_literal(template), list(template.slots))
            out.append(SilverTemplate(query, template.text, description, None))
        return out

    # ---- documents ----------------------------------------------------------------------------
    def describe_documents(
        self, titles: Sequence[str], texts: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        prompts = [
            self.lm.chat_prompt(describe_document_prompt(t, x)) + "This text"
            for t, x in zip(titles, texts, strict=False)
        ]
        completions = self.lm.generate(prompts, max_new_tokens=40, progress=progress)
        out = []
        for title, comp in zip(titles, completions, strict=True):
            desc = clean_description(title, "This text" + comp)
            # Fallback keeps every document describable; counted by the asset as 'fallback'.
            out.append(desc or f"{FALLBACK_DESCRIPTION_PREFIX} {title}.")
        return out

    # ---- stage 3: instantiation ---------------------------------------------------------------
    def instantiate(self, template: str, title: str, document: str) -> SilverInstantiation:
        tpl, reason = validate_template(template)
        if tpl is None:
            return SilverInstantiation(None, None, f"bad_template:{reason}", 0.0, 0.0)
        fillers, fill_sim = self._fill_slots(tpl, title, document)
        if fillers is None:
            return SilverInstantiation(None, None, "no_filler", fill_sim, 0.0)
        instruction = fill_template(tpl, fillers)
        windows, _ = document_parts(document)
        if not windows:
            return SilverInstantiation(None, None, "no_sentences", fill_sim, 0.0)
        emb = self.embed([instruction] + [document[s:e] for s, e in windows])
        sims = emb[1:] @ emb[0]
        best = int(np.argmax(sims))
        if sims[best] < self.answer_threshold:
            return SilverInstantiation(None, None, "no_answer_in_document", fill_sim, float(sims[best]))
        start, end = widen_to_sentences(document_sentences(document), *windows[best], self.answer_chars)
        try:
            marker = make_excerpt_marker(document, start, end, words=3)
        except ValueError:
            return SilverInstantiation(None, None, "excerpt_not_unique", fill_sim, float(sims[best]))
        return SilverInstantiation(instruction, marker, "ok", fill_sim, float(sims[best]))

    def label_compatibility(self, template: str, title: str, text: str) -> CompatibilityLabel:
        """Compatible when the teacher can instantiate the template from the document; the answer's span."""
        label = self.instantiate(template, title, text)
        if label.reason != "ok":
            return CompatibilityLabel(False, label.reason)
        return CompatibilityLabel(True, "ok", *answer_span(label.answer_markup, text))

    def _fill_slots(self, tpl: Template, title: str, document: str) -> tuple[list[str] | None, float]:
        _, names = document_parts(document)
        candidates = [c for c in dict.fromkeys([title, *names]) if 2 <= len(c) <= 60]
        emb = self.embed(list(tpl.slots) + candidates)
        slot_emb, cand_emb = emb[: tpl.n_slots], emb[tpl.n_slots :]
        sims = slot_emb @ cand_emb.T
        sims[:, 0] += 0.05  # the document's own subject is the natural first filler
        fillers, worst = [], 1.0
        for i in range(tpl.n_slots):
            row = sims[i].copy()
            for used in fillers:
                row[candidates.index(used)] = -1
            j = int(np.argmax(row))
            worst = min(worst, float(row[j]))
            fillers.append(candidates[j])
        if worst < self.fill_threshold:
            return None, worst
        return fillers, worst
