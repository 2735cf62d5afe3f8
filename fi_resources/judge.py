"""Judges: the paper's Flow-Judge (any text generator behind it) and the embedded likelihood judge.

Both return one dict per pair with the same keys, so assets and the validation treat them alike:
judge_score (int 1–5, or None when the judge gave no usable score), judge_value (a continuous score for
ranking, None likewise), judge_reason, judge_feedback, judge_error (why there is no score, else None).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from fi_resources.logic.answer_kind import answer_kind_mismatch, question_kind
from fi_resources.logic.flow_judge import (
    FLOW_JUDGE_VERSION,
    JudgeOutputError,
    flow_judge_prompt,
    parse_flow_judge_output,
)
from fi_resources.logic.genericize import type_prompt
from fi_resources.logic.prompts import judge_contexts
from fi_resources.logic.rubric import TemplateSignals, judge_pair
from fi_resources.logic.slot_types import (
    TOP_K,
    TYPE_NOUNS,
    UNTYPED_KINDS,
    asks_who,
    people_mismatch,
    slot_head,
    type_mismatch,
)
from fi_resources.logic.templates import (
    TemplateError,
    asked_coverage,
    asked_words,
    parse_template,
    question_form_reason,
    recover_fillers,
)
from fi_resources.parts import Progress

log = logging.getLogger(__name__)


class Generator(Protocol):
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = ..., stop: str | None = None
    ) -> list[str]: ...


class FlowJudge:
    """Flow-Judge-v0.1 style judging through any generator (a local LM, or a served model over HTTP).

    `format_prompt` wraps the user message for the generator (e.g. a chat template); leave it None for
    an endpoint that applies its own. Unparseable output gives the pair no score, never an exception.
    """

    def __init__(
        self,
        generator: Generator,
        name: str = "flow-judge",
        format_prompt: Callable[[str], str] | None = None,
        max_new_tokens: int = 512,
    ):
        self.generator = generator
        self.name = f"{name}/{FLOW_JUDGE_VERSION}"
        self.format_prompt = format_prompt
        self.max_new_tokens = max_new_tokens

    def score(
        self,
        instructions: Sequence[str],
        answers: Sequence[str],
        progress: Progress | None = None,
        templates: Sequence[str] | None = None,
    ) -> list[dict]:
        """`templates` is accepted for the common interface; the Flow-Judge rubric reads only the pair."""
        if len(instructions) != len(answers):
            raise ValueError("instructions and answers differ in length")
        if not instructions:
            return []
        prompts = [flow_judge_prompt(i, a) for i, a in zip(instructions, answers, strict=True)]
        if self.format_prompt:
            prompts = [self.format_prompt(p) for p in prompts]
        outputs = self.generator.generate(prompts, max_new_tokens=self.max_new_tokens, stop=None)
        if len(outputs) != len(prompts):
            raise RuntimeError(
                f"the judge generator returned {len(outputs)} outputs for {len(prompts)} prompts"
            )
        rows = []
        for text in outputs:
            try:
                verdict = parse_flow_judge_output(text)
                rows.append(
                    {
                        "judge_score": verdict.score,
                        "judge_value": float(verdict.score),
                        "judge_reason": f"flow-judge score {verdict.score}",
                        "judge_feedback": verdict.feedback,
                        "judge_error": None,
                    }
                )
            except JudgeOutputError as exc:
                rows.append(
                    {
                        "judge_score": None,
                        "judge_value": None,
                        "judge_reason": f"unparseable judge output ({exc.reason})",
                        "judge_feedback": text[:500] if text else "",
                        "judge_error": str(exc),
                    }
                )
        return rows


def answer_logprobs(
    lm, contexts: Sequence[str], answers: Sequence[str], batch_size: int = 16
) -> list[tuple[float, int]]:
    """(total log p(answer | context), answer tokens) per pair. Same numbers as `CausalLM.mean_logprob`
    × tokens, but the 49k-word output layer and softmax run only at answer positions, not over the context
    (bench/bench_judge_scoring.py, 32 demo pairs, 3 rounds on a quiet 2-core machine: 1.45x faster, scores
    within 1.1e-6; under heavy load earlier runs were within noise). An empty answer gives (0.0, 0)."""
    import torch

    from fi_resources.lm import right_padded

    tok = lm.tokenizer
    out: list[float] = []
    with torch.inference_mode():
        for b in range(0, len(contexts), batch_size):
            ctx = [
                tok(c, add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
                for c in contexts[b : b + batch_size]
            ]
            ans = [tok(a, add_special_tokens=False)["input_ids"] for a in answers[b : b + batch_size]]
            seqs = [c + a for c, a in zip(ctx, ans, strict=True)]
            ids, mask = right_padded(seqs, tok.pad_token_id)
            hidden = lm.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            rows, pos, targets = [], [], []  # one entry per answer token: its row, position, id
            for r, (c, a) in enumerate(zip(ctx, ans, strict=True)):
                rows += [r] * len(a)
                pos += range(len(c) - 1, len(c) - 1 + len(a))
                targets += a
            if targets:
                logits = lm.model.get_output_embeddings()(
                    hidden[torch.tensor(rows), torch.tensor(pos)]
                ).float()
                lp = torch.log_softmax(logits, -1)[torch.arange(len(targets)), torch.tensor(targets)]
                sums = torch.zeros(len(seqs)).index_add_(0, torch.tensor(rows), lp)
            for r, a in enumerate(ans):
                out.append((float(sums[r]) if a else 0.0, len(a)))
    return out


class SlotTyper:
    """Each type noun's log-likelihood after the LM's few-shot "<value> is a kind of", relative to its prior
    after "It is a kind of" (logic/slot_types.py). Nouns are scored by their first token: one forward pass
    per distinct value."""

    def __init__(self, lm, batch_size: int = 32):
        self.lm = lm
        self.batch_size = batch_size

    def scores(self, values: Sequence[str], extra_nouns: Sequence[str] = ()) -> dict[str, dict[str, float]]:
        from fi_resources.lm import next_token_logprobs

        nouns = list(dict.fromkeys([*TYPE_NOUNS, *extra_nouns]))
        tok = self.lm.tokenizer
        ids = [tok(" " + n, add_special_tokens=False)["input_ids"][0] for n in nouns]
        distinct = list(dict.fromkeys(values))
        if not distinct:
            return {}
        prompts = [type_prompt(v) for v in distinct] + [type_prompt("It")]
        lp = next_token_logprobs(self.lm.model, tok, prompts, ids, self.batch_size)
        relative = lp[:-1] - lp[-1]
        return {
            v: dict(zip(nouns, map(float, row), strict=True))
            for v, row in zip(distinct, relative, strict=True)
        }


class LikelihoodJudge:
    """The embedded judge: instruction gain (PMI) and fluency under the LM, relevance under the encoder, text
    flags; combined and mapped to 1–5 by logic/rubric.py. Each distinct (context, answer) is scored once."""

    name = "likelihood-judge/v7"
    max_answer_words = 64  # longer answers are scored on their start: the signals settle, the cost does not

    def __init__(self, lm, encoder, batch_size: int = 16):
        self.lm = lm
        self.encoder = encoder
        self.batch_size = batch_size
        self.typer = SlotTyper(lm)
        self.slot_top_k: int | None = TOP_K  # None: no slot type check (bench/slot_type_report.py's baseline)

    def _logprobs(
        self, items: list[tuple[str, str]], progress: Progress | None
    ) -> dict[tuple[str, str], tuple[float, int]]:
        unique = list(dict.fromkeys(items))
        unique.sort(key=lambda x: len(x[0]) + len(x[1]))  # similar lengths per batch: less padding
        out: dict[tuple[str, str], tuple[float, int]] = {}
        start = time.perf_counter()
        step = self.batch_size * 4
        for b in range(0, len(unique), step):
            chunk = unique[b : b + step]
            scores = answer_logprobs(self.lm, [c for c, _ in chunk], [a for _, a in chunk], self.batch_size)
            out.update(zip(chunk, scores, strict=True))
            if progress:
                progress(min(b + step, len(unique)), len(unique), time.perf_counter() - start)
        return out

    def signals(
        self, instructions: Sequence[str], answers: Sequence[str], progress: Progress | None = None
    ) -> list[dict]:
        """Per pair: total_gain = log p(answer | instruction) − log p(answer) summed over the answer's tokens
        (PMI), instruction_gain = the same per token, fluency = mean log p(answer), relevance = cosine."""
        if len(instructions) != len(answers):
            raise ValueError("instructions and answers differ in length")
        cut = [" ".join(a.split()[: self.max_answer_words]) for a in answers]
        ctx = [judge_contexts(i) for i in instructions]
        items = [(w, a) for (w, _), a in zip(ctx, cut, strict=True)] + [
            (wo, a) for (_, wo), a in zip(ctx, cut, strict=True)
        ]
        lp = self._logprobs(items, progress)
        texts = list(dict.fromkeys([*instructions, *answers]))
        emb = dict(zip(texts, self.encoder.encode(texts), strict=True))
        rows = []
        for (w, wo), a, full, i in zip(ctx, cut, answers, instructions, strict=True):
            (with_i, n), (without, _) = lp[(w, a)], lp[(wo, a)]
            rows.append(
                {
                    "total_gain": with_i - without,
                    "instruction_gain": (with_i - without) / n if n else float("nan"),
                    "fluency": without / n if n else float("nan"),
                    "relevance": float(np.dot(emb[i], emb[full])),
                    "answer_tokens": n,
                }
            )
        return rows

    @staticmethod
    def template_signals(template: str, instruction: str, answer: str) -> TemplateSignals:
        """What the template says about a pair: could a user ask it, and does the answer mention what is
        asked (beyond the slot values)?"""
        try:
            tpl = parse_template(template)
        except TemplateError:
            return TemplateSignals(unaskable="bad_template")
        fillers = recover_fillers(tpl.text, instruction)
        if fillers is None or len(fillers) != tpl.n_slots:
            return TemplateSignals(unaskable="not_filled_from_template")
        return TemplateSignals(
            unaskable=question_form_reason(tpl),
            asked_coverage=asked_coverage(asked_words(tpl.text), answer),
            answer_kind=question_kind(instruction)[0],
            answer_mismatch=answer_kind_mismatch(instruction, answer),
        )

    def slot_type_mismatches(
        self, templates: Sequence[str], instructions: Sequence[str], top_k: int = TOP_K
    ) -> list[str | None]:
        """Per pair, why a slot holds the wrong kind of thing (logic/slot_types.py), or None; only questions
        whose meaning depends on the slot's type are checked."""
        items = []  # (pair, value, slot description; None: "Who is <value>?", which asks for people)
        for k, (template, instruction) in enumerate(zip(templates, instructions, strict=True)):
            kind, subject = question_kind(instruction)
            if kind == "definition" and subject and asks_who(instruction):
                items.append((k, subject, None))
                continue
            if kind in UNTYPED_KINDS:
                continue
            try:
                tpl = parse_template(template)
            except TemplateError:
                continue
            fillers = recover_fillers(tpl.text, instruction)
            if fillers and len(fillers) == tpl.n_slots:
                items += [(k, f, d) for f, d in zip(fillers, tpl.slots, strict=True)]
        heads = [h for _, _, d in items if d and (h := slot_head(d))]
        scores = self.typer.scores([f for _, f, _ in items], heads)
        out: list[str | None] = [None] * len(templates)
        for k, value, description in items:
            typed = scores.get(value, {})
            why = (
                type_mismatch(value, description, typed, top_k)
                if description
                else people_mismatch(value, typed)
            )
            out[k] = out[k] or why
        return out

    def score(
        self,
        instructions: Sequence[str],
        answers: Sequence[str],
        progress: Progress | None = None,
        templates: Sequence[str] | None = None,
    ) -> list[dict]:
        """One row per pair (see module docstring). With `templates` (one per pair), the rubric's template
        anchors apply too (`logic.rubric.template_caps`)."""
        if not instructions:
            return []
        if templates is not None and len(templates) != len(instructions):
            raise ValueError("templates and instructions differ in length")
        checks = (
            [self.template_signals(t, i, a) for t, i, a in zip(templates, instructions, answers, strict=True)]
            if templates is not None
            else [None] * len(instructions)
        )
        if templates is not None and self.slot_top_k is not None:
            mismatches = self.slot_type_mismatches(templates, instructions, self.slot_top_k)
            checks = [replace(c, slot_type_mismatch=m) for c, m in zip(checks, mismatches, strict=True)]
        rows = []
        for s, answer, check in zip(
            self.signals(instructions, answers, progress), answers, checks, strict=True
        ):
            if check is not None:
                s |= {"asked_coverage": check.asked_coverage, "unaskable": check.unaskable,
                      "answer_kind": check.answer_kind, "answer_mismatch": check.answer_mismatch,
                      "slot_type_mismatch": check.slot_type_mismatch}  # fmt: skip
            if not s["answer_tokens"]:
                rows.append({**s, "judge_score": None, "judge_value": None, "judge_reason": "empty answer",
                             "judge_feedback": None, "judge_error": "empty_answer: nothing to judge"})  # fmt: skip
                continue
            j = judge_pair(s["total_gain"], s["relevance"], s["fluency"], answer, check)
            rows.append(
                {**s, "judge_score": j.score, "judge_value": j.value, "judge_reason": j.reason,
                 "judge_feedback": None, "judge_error": None}
            )  # fmt: skip
        return rows
