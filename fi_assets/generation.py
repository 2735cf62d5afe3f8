"""Stage 3–4 assets: silver instantiations → distilled instantiator → expanded pairs → judged pairs. Thin
adapters over `fi_resources.stages.generation`."""

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
from fi_resources.resources import (
    InstantiationSettingsResource,
    JudgeSettingsResource,
    ModelsResource,
    StudentSettingsResource,
    TeacherSettingsResource,
    WarehouseResource,
)
from fi_resources.stages import generation as stage
from fi_resources.stages.students import train_student
from fi_resources.warehouse import Artifact

GROUP = "generation"


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def silver_instantiations(
    document_matches: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    teacher_settings: TeacherSettingsResource,
    instantiation_settings: InstantiationSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Teacher instantiations of sampled matches, plus ~5 % deliberately incompatible pairs with target `null`."""
    teacher = models.parts().teacher("instantiate", teacher_settings)
    return table_output(
        stage.silver_instantiations(document_matches, documents, teacher, instantiation_settings)
    )


@dg.asset(group_name=GROUP, code_version="3", pool=LM_POOL, kinds={"pytorch"})
def instantiator(
    context: dg.AssetExecutionContext,
    silver_instantiations: pd.DataFrame,
    models: ModelsResource,
    student_settings: StudentSettingsResource,
    instantiation_settings: InstantiationSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Student instantiator: the base LM fine-tuned on the teacher's silver instantiations. With none (a
    teacher whose every instantiation was dropped, counted by reason in `silver_instantiations`), the base LM
    is saved untrained so the graph still runs and counts what it makes; its check `instantiator_trained`
    fails and says so."""
    examples = stage.instantiator_examples(silver_instantiations)
    if not examples:
        context.log.warning("no silver instantiations: the instantiator is the untrained base LM")
    parts, out = models.parts(), warehouse.get().staging_dir("instantiator")
    result = train_student(
        parts.store.fresh_lm(),
        examples,
        out,
        epochs=instantiation_settings.instantiator_epochs,
        batch_size=4,
        settings=student_settings,
        base_model=parts.model_names()["lm"],
        new_tokens=stage.instantiator_new_tokens(instantiation_settings),
        log=text_logger(context, "instantiator fine-tune"),
    )
    untrained = {} if examples else {"untrained": "no silver instantiations to train on"}
    return artifact_output(out, result, untrained)


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="4", pool=LM_POOL, kinds={"duckdb"})
def instantiated_pairs(
    context: dg.AssetExecutionContext,
    document_matches: pd.DataFrame,
    documents: pd.DataFrame,
    instantiator: Artifact,
    models: ModelsResource,
    instantiation_settings: InstantiationSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """The student fills each matched template; `<excerpt>` markers are expanded from the document."""
    parts = models.parts()
    student = parts.backend("instantiator", instantiator.path, version=instantiator.data_version)
    return table_output(
        stage.instantiate_pairs(
            document_matches,
            documents,
            student,
            f"instantiator@{instantiator.data_version}",
            parts.store.token_counter(),  # the students' tokenizer is their base model's
            instantiation_settings,
            progress_logger(context, "instantiating"),
        )
    )


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="8", pool=LM_POOL, kinds={"duckdb"})
def judged_pairs(
    context: dg.AssetExecutionContext,
    instantiated_pairs: pd.DataFrame,
    models: ModelsResource,
    judge_settings: JudgeSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """The judge scores every valid pair 1–5 (the paper's rubric); pairs scoring `keep_score` (4) or more are
    kept. A pair whose judge output cannot be parsed gets no score (and is not kept); the reason is recorded."""
    judge = models.parts().judge(judge_settings.judge)
    return table_output(
        stage.judge_pairs(instantiated_pairs, judge, judge_settings, progress_logger(context, "judging"))
    )
