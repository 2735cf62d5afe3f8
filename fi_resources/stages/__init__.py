"""The stage layer: one plain function per pipeline stage, no Dagster import.

A stage takes data frames, the parts it needs (a teacher for one job, a backend, an encoder, a judge; see
`fi_resources.parts`) and its own settings section, and returns a `StageResult`: the frame (or the facts of a
model it wrote into a folder it was given) plus stats. The Dagster assets in `fi_assets/` are thin adapters
that fetch resources, call a stage and turn its stats into UI metadata, so every stage can be tested
without Dagster.

Stats values say what they are, and the adapter decides how the UI shows them: plain scalars as they are,
`Counts` as a table of reasons, `Distribution` as a histogram, `Sample` as a Markdown table of rows, a
DataFrame as a Markdown table, `Mapping` as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pandas as pd

T = TypeVar("T")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Counts:
    """How many rows had each outcome (a reason table), out of `total` (default: the sum)."""

    counts: Mapping[str, int]
    total: int | None = None


@dataclass(frozen=True)
class Distribution:
    values: Sequence[float]
    title: str


@dataclass(frozen=True)
class Funnel:
    """Counts that narrow step by step (matches → valid → passed → kept), shown as a bar chart."""

    steps: Sequence[tuple[str, int]]
    title: str


@dataclass(frozen=True)
class Bars:
    """Counts per category, in the given order, shown as a bar chart with its table."""

    counts: Mapping[str, int]
    title: str


@dataclass(frozen=True)
class Sample:
    """A few rows to read in the UI."""

    frame: pd.DataFrame
    columns: Sequence[str]
    n: int = 5
    width: int = 160


@dataclass
class StageResult(Generic[T]):
    value: T  # a DataFrame, or a dict of facts about the model a stage wrote
    stats: dict[str, object] = field(default_factory=dict)


def value_counts(series: pd.Series) -> dict[str, int]:
    """A column's value counts as plain {str: int}, in sorted key order."""
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def progress_reporter(log: Log, what: str, every_s: float = 10.0) -> Callable[[int, int, float], None]:
    """A `Progress` callback that logs 'what: done/total (rate/s, ETA)' at most every `every_s` and at the end."""
    last = [0.0]

    def report(done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < every_s:
            return
        last[0] = now
        rate = done / elapsed if elapsed else 0.0
        eta = (total - done) / rate if rate else 0.0
        log(f"{what}: {done}/{total} ({rate:.1f}/s, ETA {eta:.0f}s)")

    return report


def no_log(message: str) -> None:
    """The default `log` of a stage: say nothing."""


def backend_stats(backend: object) -> dict[str, object]:
    """What a generation backend did so far: cache hits/misses, prompts sent to the model, speed."""
    meta: dict[str, object] = {}
    cache_stats = getattr(backend, "cache_stats", None)
    if cache_stats is not None:
        meta.update(cache_stats.as_dict())
    stats = backend.stats  # type: ignore[attr-defined]
    meta.setdefault("model_calls", stats.prompts)
    meta["generation_tokens_per_s"] = round(stats.tokens_per_s, 1)
    meta["backend"] = getattr(backend, "model_id", "")
    engine = getattr(backend, "engine", None)
    if isinstance(engine, str) and engine != "torch":
        meta["engine"] = engine
        # CTranslate2 cannot copy-constrain: such calls ran on the torch loop (fi_resources/lm/ct2.py).
        meta["torch_fallback_prompts"] = getattr(getattr(backend, "lm", None), "torch_fallback_prompts", 0)
    return meta


def teacher_stats(teacher: object) -> dict[str, object]:
    """A teacher's generation work (`backend_stats` of its `lm`), or nothing for a teacher that does not
    generate."""
    generator = getattr(teacher, "lm", None)
    stats = backend_stats(generator) if generator is not None else {}
    if generator is not None and getattr(generator.stats, "schema_fallbacks", 0):
        stats["schema_fallbacks"] = generator.stats.schema_fallbacks
    # A prompted teacher's dropped outputs by job and reason (`PromptedTeacher.drop_counts`).
    drops = getattr(teacher, "drop_counts", None)
    if drops is not None:
        stats["teacher_drops"] = Counts(drops())
    return stats
