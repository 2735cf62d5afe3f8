"""Shared pieces of the asset modules: partitions, progress logging, metadata helpers."""

import io
import time
from collections.abc import Callable, Sequence

import dagster as dg
import pandas as pd

from fi_resources.logic.prompts import PROMPT_VERSION
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.warehouse import Artifact

document_shards = dg.DynamicPartitionsDefinition(name="document_shards")

# Steps that hold a language model in memory or train one: one at a time on a small machine.
LM_POOL = "lm"


def progress_logger(context: dg.AssetExecutionContext, what: str) -> Callable[[int, int, float], None]:
    """Logs 'what: done/total (rate/s, ETA)' at most every 10 s and at the end."""
    last = [0.0]

    def report(done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 10:
            return
        last[0] = now
        rate = done / elapsed if elapsed else 0.0
        eta = (total - done) / rate if rate else 0.0
        context.log.info(f"{what}: {done}/{total} ({rate:.1f}/s, ETA {eta:.0f}s)")

    return report


def backend_metadata(backend: object) -> dict:
    """What a generation backend did in this step: cache hits/misses, prompts sent to the model, speed."""
    meta: dict = {}
    cache_stats = getattr(backend, "cache_stats", None)
    if cache_stats is not None:
        meta.update(cache_stats.as_dict())
    stats = backend.stats  # type: ignore[attr-defined]
    meta.setdefault("model_calls", stats.prompts)
    meta["generation_tokens_per_s"] = round(stats.tokens_per_s, 1)
    meta["backend"] = getattr(backend, "model_id", "")
    return meta


def text_logger(context: dg.AssetExecutionContext, what: str) -> Callable[[str], None]:
    return lambda msg: context.log.info(f"{what}: {msg}")


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


def histogram_md(values: list[float], title: str, bins: int = 20) -> dg.MetadataValue:
    """A PNG histogram embedded in Markdown (the UI renders it inline)."""
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=80)
    ax.hist(values, bins=bins, color="#4f46e5")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return dg.MetadataValue.md(
        f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
    )


def train_student(
    context: dg.AssetExecutionContext,
    asset: str,
    examples: list[tuple[str, str]],
    epochs: int,
    batch_size: int,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
    new_tokens: Sequence[str] = (),
) -> dg.Output[Artifact]:
    """Fine-tune a fresh copy of the profile's base LM on (prompt, target) pairs into a versioned artifact.
    `new_tokens` become single tokens of the student's vocabulary first."""
    out = warehouse.get().staging_dir(asset)
    student = models.fresh_lm()
    added = student.add_tokens(new_tokens) if new_tokens else 0
    stats = student.finetune(
        examples,
        out,
        epochs=epochs,
        lr=settings.student_lr,
        batch_size=batch_size,
        train_top_layers=settings.student_train_top_layers,
        lora_rank=settings.student_lora_rank,
        seed=settings.seed,
        progress=text_logger(context, f"{asset} fine-tune"),
    )
    info = {
        "base_model": models.model_names()["lm"],
        "prompt_version": PROMPT_VERSION,
        "added_tokens": added,
        **stats,
    }
    return dg.Output(Artifact(str(out), info=info), metadata=info)
