"""The swappable parts a stage is given, as small interfaces: one per teacher job, the judge and the text
generator. A stage function depends on these, never on a concrete class, so a rule-based teacher, an LLM
teacher or a released model plugs in by configuration (`fi_resources.profiles`, `TeacherSettings`).

Plain Python: no Dagster and no model import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Progress = Callable[[int, int, float], None]

# The teacher's jobs (paper §1–§3); each is chosen separately (TeacherSettings, Profile.teachers).
TEACHER_JOBS = ("genericize", "describe", "compatibility", "instantiate")


@dataclass
class SilverTemplate:
    query: str
    template: str | None
    description: str | None
    reason: str | None  # why no template was produced


@dataclass
class SilverInstantiation:
    instruction: str | None
    answer_markup: str | None
    reason: str  # "ok" or why the teacher refused (null target)
    fill_similarity: float
    answer_similarity: float


@dataclass
class CompatibilityLabel:
    """Can this document fill this template? With the answer's character span when it can ((-1, -1) else)."""

    compatible: bool
    reason: str
    answer_start: int = -1
    answer_end: int = -1


class TextGenerator(Protocol):
    """A generation backend (in-process or served), as `fi_resources.backends` implements it.

    `copy_sources` (one text per prompt) asks for copy-constrained excerpt markers where the backend can
    decode under a constraint (`supports_copy_constraint`); others decode as usual.
    """

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
    ) -> list[str]: ...

    def chat_prompt(self, user: str) -> str: ...


class Genericizer(Protocol):
    """Teacher job 1: a real query → an `<fi>` template and its compatible-document description."""

    name: str

    def genericize(
        self, queries: Sequence[str], progress: Progress | None = None
    ) -> list[SilverTemplate]: ...


class DocumentDescriber(Protocol):
    """Teacher job 2: a one-sentence description of each document."""

    name: str

    def describe_documents(
        self, titles: Sequence[str], texts: Sequence[str], progress: Progress | None = None
    ) -> list[str]: ...


class CompatibilityLabeler(Protocol):
    """Teacher job 3: is a (document, template) pair compatible (hard positives and negatives)?"""

    name: str

    def label_compatibility(self, template: str, title: str, text: str) -> CompatibilityLabel: ...


class TeacherInstantiator(Protocol):
    """Teacher job 4: fill a template from a document and answer with `<excerpt>` markers, or refuse."""

    name: str

    def instantiate(self, template: str, title: str, document: str) -> SilverInstantiation: ...


class Judge(Protocol):
    """Scores pairs 1–5: one dict per pair with judge_score, judge_value, judge_reason, judge_feedback,
    judge_error (see `fi_resources.judge`)."""

    name: str

    def score(
        self,
        instructions: Sequence[str],
        answers: Sequence[str],
        progress: Progress | None = None,
        templates: Sequence[str] | None = None,  # where known: lets a judge check the fill against it
    ) -> list[dict]: ...


class ValueTyper(Protocol):
    """Scores how well each type noun fits each value ("Algeria" → country high, fruit low): the nouns'
    log-likelihoods after "<value> is a kind of", relative to their prior (`fi_resources.judge.SlotTyper`)."""

    def scores(
        self, values: Sequence[str], extra_nouns: Sequence[str] = ()
    ) -> dict[str, dict[str, float]]: ...
