"""Stage 2 assets (paper §2): teacher-labelled pairs → embedder fine-tuned in two rounds → FAISS template
index → document matches → retrieval evaluation on held-out documents. Thin adapters over
`fi_resources.stages.retrieval`."""

import dagster as dg
import pandas as pd

from fi_assets.common import (
    LM_POOL,
    artifact_output,
    document_shards,
    progress_logger,
    table_output,
    text_logger,
)
from fi_resources.index import TemplateIndex
from fi_resources.resources import (
    MatchingSettingsResource,
    ModelsResource,
    RetrievalSettingsResource,
    TeacherSettingsResource,
    WarehouseResource,
)
from fi_resources.stages import retrieval as stage
from fi_resources.stages.templates import valid_templates
from fi_resources.warehouse import Artifact

GROUP = "retrieval"


@dg.asset(group_name=GROUP, code_version="3", pool=LM_POOL, kinds={"duckdb"})
def embedder_pairs(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    document_descriptions: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    teacher_settings: TeacherSettingsResource,
    retrieval_settings: RetrievalSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Top-k templates per described document (untuned encoder), labelled compatible or not by the teacher,
    with the answer excerpt's character span (for chunk labels) and a seeded train/heldout split by document."""
    parts = models.parts()
    return table_output(
        stage.label_pairs(
            documents,
            document_descriptions,
            valid_templates(query_templates),
            parts.store.encoder(),
            parts.teacher("compatibility", teacher_settings),
            retrieval_settings,
            progress_logger(context, "teacher labels"),
        )
    )


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"pytorch"})
def retrieval_embedder(
    context: dg.AssetExecutionContext,
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    retrieval_settings: RetrievalSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Round 1: the encoder, carrying GaussianPooling, fine-tuned for compatibility on the global embedding
    (MultipleNegativesRanking with the teacher's hard negatives), training documents only."""
    parts, out = models.parts(), warehouse.get().staging_dir("retrieval_embedder")
    encoder = parts.store.trainable_encoder().with_gaussian_pooling(*retrieval_settings.pooling())
    result = stage.train_global_embedder(
        embedder_pairs, documents, valid_templates(query_templates), encoder, out, retrieval_settings,
        log=text_logger(context, "retrieval_embedder"),
    )  # fmt: skip
    return artifact_output(out, result, {"base_model": parts.model_names()["encoder"]})


@dg.asset(group_name=GROUP, code_version="1", kinds={"duckdb"})
def chunk_labels(
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    retrieval_settings: RetrievalSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Round-2 training data: for each compatible (document, template) pair, the chunk k (1..K) whose Gaussian
    centre k/(K+1) is nearest the middle of the teacher's answer excerpt, measured in tokens of the encoder's
    (truncated) input. Pairs whose answer lies past the truncation are dropped and counted."""
    encoder = models.parts().store.encoder()
    return table_output(stage.chunk_labels(embedder_pairs, documents, encoder, retrieval_settings))


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def local_embedder(
    context: dg.AssetExecutionContext,
    chunk_labels: pd.DataFrame,
    embedder_pairs: pd.DataFrame,
    retrieval_embedder: Artifact,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    retrieval_settings: RetrievalSettingsResource,
    matching_settings: MatchingSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Round 2: the round-1 embedder trained so local embedding k of a document matches the template whose
    answer sits in chunk k (LocalChunkLoss), then its match threshold calibrated on held-out teacher labels
    (the cosine maximising F1). This is the final embedder the index and the matcher use."""
    out = warehouse.get().staging_dir("local_embedder")
    result = stage.train_local_embedder(
        chunk_labels, embedder_pairs, documents, valid_templates(query_templates),
        models.parts().store.trainable_encoder(retrieval_embedder.path), out, retrieval_settings,
        matching_settings, log=text_logger(context, "local_embedder"),
    )  # fmt: skip
    provenance = {
        "base_model": retrieval_embedder.info.get("base_model", ""),
        "round1_version": retrieval_embedder.data_version,
    }
    return artifact_output(out, result, provenance)


@dg.asset(group_name=GROUP, code_version="3", pool=LM_POOL, kinds={"faiss"})
def template_index(
    context: dg.AssetExecutionContext,
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    models: ModelsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """FAISS index over the bank's compatible document descriptions, embedded by the final (round-2) embedder."""
    out = warehouse.get().staging_dir("template_index")
    encoder = models.parts().encoder(local_embedder.path)
    progress = progress_logger(context, "embedding the template bank")
    result = stage.build_template_index(valid_templates(query_templates), encoder, out, progress)
    return artifact_output(out, result, {"embedder_version": local_embedder.data_version})


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="8", pool=LM_POOL, kinds={"duckdb"})
def document_matches(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    template_index: Artifact,
    models: ModelsResource,
    matching_settings: MatchingSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Templates for each document (paper's rule): the global and K local embeddings each search the index;
    candidates above the cosine threshold; one complexity-weighted sample per embedding, no duplicates."""
    parts = models.parts()
    return table_output(
        stage.match_documents(
            documents,
            valid_templates(query_templates),
            parts.encoder(local_embedder.path),
            TemplateIndex(template_index.path),
            stage.match_threshold(matching_settings, local_embedder.info),
            context.partition_key,
            matching_settings,
            parts.typer() if matching_settings.title_type_top_k is not None else None,
            progress_logger(context, "matching"),
        )
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def retrieval_eval(
    context: dg.AssetExecutionContext,
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    models: ModelsResource,
    teacher_settings: TeacherSettingsResource,
    retrieval_settings: RetrievalSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Held-out documents: precision@6 of teacher-compatible templates for the tuned embedder (global + K
    locals, one per embedding), the untuned encoder with the same Gaussian pooling, and plain mean pooling
    (global top 6); and the Pearson correlation between the retrieving chunk k and the answer's position."""
    parts = models.parts()
    return table_output(
        stage.evaluate_retrieval(
            embedder_pairs,
            documents,
            valid_templates(query_templates),
            tuned=parts.store.encoder(local_embedder.path),
            untuned=parts.store.trainable_encoder().with_gaussian_pooling(*retrieval_settings.pooling()),
            labeler=parts.teacher("compatibility", teacher_settings),
            settings=retrieval_settings,
            log=text_logger(context, "retrieval_eval"),
        )
    )
