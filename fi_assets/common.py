"""Shared pieces of the asset modules: partitions, progress logging, and turning a stage's result into a
Dagster output with UI metadata and a data version."""

import base64
import io
from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from fi_resources.stages import Bars, Counts, Distribution, Funnel, Sample, StageResult, progress_reporter
from fi_resources.warehouse import Artifact, frame_version, hash_folder

document_shards = dg.DynamicPartitionsDefinition(name="document_shards")

# Steps that hold a language model in memory or train one: one at a time on a small machine.
LM_POOL = "lm"


def progress_logger(context: dg.AssetExecutionContext, what: str) -> Callable[[int, int, float], None]:
    """Logs 'what: done/total (rate/s, ETA)' at most every 10 s and at the end."""
    return progress_reporter(context.log.info, what)


def text_logger(context: dg.AssetExecutionContext, what: str) -> Callable[[str], None]:
    return lambda msg: context.log.info(f"{what}: {msg}")


# ---- stage results → metadata -------------------------------------------------------------------
def to_metadata(stats: Mapping[str, object]) -> dict[str, object]:
    """A stage's stats as UI metadata: reason tables, histograms, Markdown samples, JSON, scalars."""
    out: dict[str, object] = {}
    for key, value in stats.items():
        if value is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()  # numpy scalars are not metadata values
        if isinstance(value, Counts):
            out[key] = counts_md(dict(value.counts), value.total)
        elif isinstance(value, Distribution):
            out[key] = histogram_md(list(value.values), value.title) if len(value.values) else "n/a"
        elif isinstance(value, Funnel):
            out[key] = funnel_md(list(value.steps), value.title)
        elif isinstance(value, Bars):
            out[key] = bars_md(dict(value.counts), value.title) if value.counts else "n/a"
        elif isinstance(value, Sample):
            out[key] = md_sample(value.frame, list(value.columns), value.n, value.width)
        elif isinstance(value, pd.DataFrame):
            out[key] = dg.MetadataValue.md(value.to_markdown(index=False))
        elif isinstance(value, Mapping):
            out[key] = dg.MetadataValue.json(dict(value))
        else:
            out[key] = value
    return out


def table_output(result: StageResult[pd.DataFrame]) -> dg.Output[pd.DataFrame]:
    """A stage's frame as the asset's output, its content hash as the data version Dagster tracks."""
    return dg.Output(
        result.value,
        metadata=to_metadata(result.stats),
        data_version=dg.DataVersion(frame_version(result.value)),
    )


def artifact_output(
    folder: Path, result: StageResult[dict], provenance: Mapping[str, object] | None = None
) -> dg.Output[Artifact]:
    """A model a stage wrote into `folder`, with `provenance` (what it was made from) and the stage's facts
    about it (stored with the pointer row)."""
    version = hash_folder(folder)
    info = {**(provenance or {}), **result.value}
    return dg.Output(
        Artifact(str(folder), data_version=version, info=info),
        metadata=to_metadata({**info, **result.stats}),
        data_version=dg.DataVersion(version),
    )


def md_sample(df: pd.DataFrame, columns: list[str], n: int = 5, width: int = 160) -> dg.MetadataValue:
    """A Markdown table of the first rows, long cells shortened."""
    if df.empty:
        return dg.MetadataValue.md("_no rows_")
    cols = [c for c in columns if c in df.columns]
    head = df[cols].head(n).copy()
    for c in cols:
        head[c] = head[c].map(lambda v: _short(v, width))
    return dg.MetadataValue.md(head.to_markdown(index=False))


def _short(value: object, width: int) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def counts_md(counts: dict[str, int], total: int | None = None) -> dg.MetadataValue:
    total = total if total is not None else sum(counts.values())
    lines = ["| reason | count | share |", "|---|---:|---:|"]
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {key} | {n} | {n / total:.1%} |" if total else f"| {key} | {n} | – |")
    return dg.MetadataValue.md("\n".join(lines))


def _png_md(fig, title: str, text: str = "") -> dg.MetadataValue:
    """A matplotlib figure as a PNG embedded in Markdown (the UI renders it inline), then `text`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    image = f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
    return dg.MetadataValue.md(f"{image}\n\n{text}" if text else image)


def _figure(height: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, height), dpi=80)


def histogram_md(values: list[float], title: str, bins: int = 20) -> dg.MetadataValue:
    """A PNG histogram embedded in Markdown."""
    fig, ax = _figure()
    ax.hist(values, bins=bins, color="#4f46e5")
    ax.set_title(title)
    return _png_md(fig, title)


def bars_md(counts: dict[str, int], title: str, label_width: int = 48) -> dg.MetadataValue:
    """Horizontal bars, one per category in the given order (first on top), and the table."""
    labels = [_short(k, label_width) for k in counts][::-1]
    values = list(counts.values())[::-1]
    fig, ax = _figure(0.6 + 0.3 * len(counts))
    ax.barh(range(len(values)), values, color="#4f46e5")
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    for y, n in enumerate(values):
        ax.text(n, y, f" {n}", va="center", fontsize=7)
    ax.set_xlim(0, max(values + [1]) * 1.25)
    ax.set_title(title)
    rows = "\n".join(f"| {_short(k, 120)} | {n} |" for k, n in counts.items())
    return _png_md(fig, title, f"| {title} | count |\n|---|---:|\n{rows}")


def funnel_md(steps: list[tuple[str, int]], title: str) -> dg.MetadataValue:
    """Horizontal bars, widest first, each with its count and its share of the first step; and a table."""
    fig, ax = _figure(0.5 + 0.45 * len(steps))
    labels, counts = [s for s, _ in steps][::-1], [n for _, n in steps][::-1]
    ax.barh(labels, counts, color="#4f46e5")
    first = steps[0][1] if steps else 0
    for y, n in enumerate(counts):
        ax.text(n, y, f" {n} ({n / first:.0%})" if first else f" {n}", va="center")
    ax.set_xlim(0, max(counts + [1]) * 1.5)
    ax.set_title(title)
    rows = "\n".join(f"| {s} | {n} |" for s, n in steps)
    return _png_md(fig, title, f"| step | pairs |\n|---|---:|\n{rows}")
