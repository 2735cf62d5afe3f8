"""Document assets: each shard file is a dynamic partition; the teacher describes every document. Thin
adapters over `fi_resources.stages.documents`."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, document_shards, progress_logger, table_output
from fi_resources.inbox import resolve_shard
from fi_resources.resources import (
    DocumentSettingsResource,
    InboxSettingsResource,
    ModelsResource,
    TeacherSettingsResource,
    WarehouseResource,
)
from fi_resources.sources import InputFileError
from fi_resources.stages import documents as stage

GROUP = "documents"


def shard_file(inbox: InboxSettingsResource, warehouse: WarehouseResource, shard: str) -> Path:
    """The shard's file, as the sensor chose it; a key that is not a file name of the inbox fails."""
    try:
        return resolve_shard(inbox.folder("documents", warehouse.path), shard)
    except InputFileError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="3", kinds={"duckdb"})
def documents(
    context: dg.AssetExecutionContext,
    inbox: InboxSettingsResource,
    document_settings: DocumentSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[pd.DataFrame]:
    """One shard file → one row per passage (up to passage_chars, on paragraph and sentence boundaries), a
    seeded sample of passages_per_document per document; metadata: how much of the text is used."""
    path = shard_file(inbox, warehouse, context.partition_key)
    try:
        result = stage.shard_documents(path, context.partition_key, document_settings)
    except InputFileError as exc:
        raise dg.Failure(str(exc)) from exc
    result.stats["file"] = dg.MetadataValue.path(str(path))
    return table_output(result)


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def document_descriptions(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    models: ModelsResource,
    teacher_settings: TeacherSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """The teacher writes a one-sentence description of each document (used to build embedder pairs)."""
    describer = models.parts().teacher("describe", teacher_settings)
    return table_output(
        stage.describe_documents(documents, describer, progress_logger(context, "describing"))
    )
