"""Documents: each shard file is a dynamic partition; the teacher describes every document."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_assets.common import (
    LM_POOL,
    backend_metadata,
    counts_md,
    document_shards,
    md_sample,
    progress_logger,
)
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.sources import INPUT_SUFFIXES, InputFileError, read_document_shard

GROUP = "documents"


def shard_file(settings: PipelineSettings, warehouse: WarehouseResource, shard: str) -> Path:
    folder = settings.inbox("documents", warehouse.home)
    for suffix in INPUT_SUFFIXES:
        path = folder / f"{shard}{suffix}"
        if path.exists():
            return path
    raise dg.Failure(f"shard {shard!r}: no file {shard}{{{','.join(INPUT_SUFFIXES)}}} in {folder}")


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="1", kinds={"duckdb"})
def documents(
    context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: WarehouseResource
) -> dg.Output[pd.DataFrame]:
    """One shard file → documents (lead paragraphs up to max_document_chars, cut at a sentence end)."""
    shard = context.partition_key
    path = shard_file(settings, warehouse, shard)
    try:
        df, dropped = read_document_shard(path, settings.max_document_chars)
    except InputFileError as exc:
        raise dg.Failure(str(exc)) from exc
    df.insert(1, "shard", shard)
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "file": dg.MetadataValue.path(str(path)),
            "dropped": counts_md(dropped, total=len(df) + sum(dropped.values())),
            "mean_chars": round(float(df["text"].str.len().mean()), 1) if len(df) else 0.0,
            "sample": md_sample(df, ["doc_id", "title", "text"]),
        },
    )


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def document_descriptions(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """The teacher writes a one-sentence description of each document (used to build embedder pairs)."""
    teacher = models.teacher_for(settings)
    descs = teacher.describe_documents(
        documents["title"].tolist(),
        documents["text"].tolist(),
        progress=progress_logger(context, "describing"),
    )
    df = pd.DataFrame(
        {
            "doc_id": documents["doc_id"],
            "shard": documents["shard"],
            "description": descs,
            "teacher": teacher.name,
        }
    )
    fallback = int(df["description"].str.startswith("An encyclopedia article about").sum())
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "fallback_descriptions": fallback,
            **backend_metadata(teacher.lm),
            "sample": md_sample(df.merge(documents[["doc_id", "title"]]), ["title", "description"]),
        },
    )
