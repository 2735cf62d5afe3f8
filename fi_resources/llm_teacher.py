"""The prompted teacher: every teacher job asked of an instruction-following LLM (the paper's method), one
versioned prompt per job (`fi_resources.logic.llm_prompts`), through the teacher role's backend.

It meets the same interfaces as the rule-based `WeakSupervisionTeacher` (`fi_resources.parts`), so a
profile or `TeacherSettings` swaps one for the other per job. Each prompt is sent with its JSON schema as
OpenAI `response_format`; a server that refuses it is asked again without (`HTTPBackend`), and every output
is parsed strictly either way. An output that fails is dropped (a null target, a refused template, a
fallback description) and counted by stage and reason in `outcomes`, which the assets' metadata shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from fi_resources.logic import llm_prompts as lp
from fi_resources.logic.prompts import FALLBACK_DESCRIPTION_PREFIX
from fi_resources.parts import CompatibilityLabel, Progress, SilverInstantiation, SilverTemplate

# New tokens per job: a JSON object with one template, one sentence, a score, or an instruction and answer.
MAX_NEW_TOKENS = {"genericize": 128, "describe": 80, "compatibility": 96, "instantiate": 320}


class PromptedTeacher:
    """Teacher = one LLM prompted per job (see module docstring). `lm` is a generation backend whose
    `chat_prompt` wraps a user message (a chat endpoint sends it as is) and whose `generate` takes
    `schema` (an OpenAI `response_format`). A compatibility score of `min_compatible_score` (1–5) or more
    labels a pair compatible."""

    def __init__(
        self,
        lm,
        structured_output: bool = True,
        min_compatible_score: int = 4,
        max_new_tokens: dict[str, int] | None = None,  # per job, over MAX_NEW_TOKENS
    ):
        if not 1 <= min_compatible_score <= 5:
            raise ValueError(f"min_compatible_score must be 1–5, not {min_compatible_score}")
        self.lm = lm
        self.structured_output = structured_output
        self.min_compatible_score = min_compatible_score
        self.max_new_tokens = {**MAX_NEW_TOKENS, **(max_new_tokens or {})}
        self.name = f"prompted-teacher/{lp.LLM_PROMPT_VERSION}@{getattr(lm, 'name', '') or lm.model_id}"
        self.outcomes: dict[str, Counter[str]] = {job: Counter() for job in lp.PROMPT_VERSIONS}

    def drop_counts(self) -> dict[str, int]:
        """Dropped outputs so far as {"job:reason": count} (ok outcomes left out)."""
        return {
            f"{job}:{reason}": n
            for job, counts in self.outcomes.items()
            for reason, n in sorted(counts.items())
            if reason != "ok"
        }

    def _ask(self, job: str, users: Sequence[str], progress: Progress | None = None) -> list[str]:
        schema = lp.response_format(job) if self.structured_output else None
        prompts = [self.lm.chat_prompt(u) for u in users]
        return self.lm.generate(
            prompts, max_new_tokens=self.max_new_tokens[job], progress=progress, schema=schema
        )

    # ---- stage 1: templates -------------------------------------------------------------------
    def genericize(self, queries: Sequence[str], progress: Progress | None = None) -> list[SilverTemplate]:
        texts = self._ask("genericize", [lp.genericize_prompt(q) for q in queries], progress)
        out = []
        for query, text in zip(queries, texts, strict=True):
            value, reason = lp.parse_genericize(text, query)
            self.outcomes["genericize"][reason] += 1
            if value is None:
                out.append(SilverTemplate(query, None, None, reason))
            else:
                out.append(SilverTemplate(query, value.template, value.description, None))
        return out

    # ---- documents ----------------------------------------------------------------------------
    def describe_documents(
        self, titles: Sequence[str], texts: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        users = [lp.describe_prompt(t, x) for t, x in zip(titles, texts, strict=True)]
        out = []
        for title, text in zip(titles, self._ask("describe", users, progress), strict=True):
            description, reason = lp.parse_describe(text)
            self.outcomes["describe"][reason] += 1
            # As the rule teacher: every document stays describable; the asset counts the fallbacks.
            out.append(description or f"{FALLBACK_DESCRIPTION_PREFIX} {title}.")
        return out

    # ---- stage 2: compatibility labels --------------------------------------------------------
    def label_compatibility(self, template: str, title: str, text: str) -> CompatibilityLabel:
        [answer] = self._ask("compatibility", [lp.compatibility_prompt(template, title, text)])
        judgement, reason = lp.parse_compatibility(answer, text)
        self.outcomes["compatibility"][reason] += 1
        if judgement is None:
            return CompatibilityLabel(False, reason)
        if judgement.score < self.min_compatible_score:
            return CompatibilityLabel(False, "low_score")
        return CompatibilityLabel(True, "ok", judgement.answer_start, judgement.answer_end)

    # ---- stage 3: instantiation ---------------------------------------------------------------
    def instantiate(self, template: str, title: str, document: str) -> SilverInstantiation:
        [answer] = self._ask("instantiate", [lp.instantiate_prompt(template, title, document)])
        value, reason = lp.parse_instantiate(answer, template, document)
        self.outcomes["instantiate"][reason] += 1
        if value is None:
            return SilverInstantiation(None, None, reason, 0.0, 0.0)
        # No similarities here: the LLM chose the fill and the excerpt; grounding says how much it copied.
        return SilverInstantiation(value.instruction, value.answer_markup, "ok", 1.0, value.grounding_ratio)
