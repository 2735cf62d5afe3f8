"""Documents: one shard file → documents; the teacher describes each document in one sentence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fi_resources.logic.prompts import FALLBACK_DESCRIPTION_PREFIX
from fi_resources.parts import DocumentDescriber, Progress
from fi_resources.settings import DocumentSettings
from fi_resources.sources import read_document_shard
from fi_resources.stages import Counts, Sample, StageResult, teacher_stats


def shard_documents(path: Path, shard: str, settings: DocumentSettings) -> StageResult[pd.DataFrame]:
    """A shard file's documents (lead paragraphs up to `max_document_chars`, cut at a sentence end). Raises
    `InputFileError` naming the file (and line) when it cannot be read."""
    df, dropped = read_document_shard(path, settings.max_document_chars)
    df.insert(1, "shard", shard)
    return StageResult(
        df,
        {
            "rows": len(df),
            "dropped": Counts(dropped, total=len(df) + sum(dropped.values())),
            "mean_chars": round(float(df["text"].str.len().mean()), 1) if len(df) else 0.0,
            "sample": Sample(df, ["doc_id", "title", "text"]),
        },
    )


def describe_documents(
    documents: pd.DataFrame, describer: DocumentDescriber, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """One description per document, by the teacher chosen for the `describe` job."""
    descriptions = describer.describe_documents(
        documents["title"].tolist(), documents["text"].tolist(), progress=progress
    )
    df = pd.DataFrame(
        {
            "doc_id": documents["doc_id"],
            "shard": documents["shard"],
            "description": descriptions,
            "teacher": describer.name,
        }
    )
    stats: dict[str, object] = {
        "rows": len(df),
        "fallback_descriptions": int(df["description"].str.startswith(FALLBACK_DESCRIPTION_PREFIX).sum()),
    }
    stats |= teacher_stats(describer)
    stats["sample"] = Sample(df.merge(documents[["doc_id", "title"]]), ["title", "description"])
    return StageResult(df, stats)
