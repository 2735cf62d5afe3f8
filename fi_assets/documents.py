"""Document assets: each shard file is a dynamic partition; the teacher describes every document. Thin
adapters over `fi_resources.stages.documents`."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, document_shards, progress_logger, table_output, to_metadata
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
from fi_resources.warehouse import StagedTable

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
) -> dg.Output[StagedTable]:
    """One shard file → one row per passage (up to passage_chars, on paragraph and sentence boundaries), a
    seeded sample of passages_per_document per document; metadata: how much of the text is used. Written
    in batches as the file is read, so a shard of any size fits in memory."""
    path = shard_file(inbox, warehouse, context.partition_key)
    passages = stage.ShardPassages(path, context.partition_key, document_settings)
    try:
        staged = warehouse.get().stage_table(
            context.asset_key.to_user_string(), context.partition_key, passages.batches()
        )
    except InputFileError as exc:
        raise dg.Failure(str(exc)) from exc
    stats = passages.stats() | {"file": dg.MetadataValue.path(str(path))}
    return dg.Output(staged, metadata=to_metadata(stats), data_version=dg.DataVersion(staged.data_version))


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
