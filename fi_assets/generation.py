"""Stage 3–4 assets: silver instantiations → distilled instantiator → expanded pairs → judged pairs. Thin
adapters over `fi_resources.stages.generation`."""

from pathlib import Path

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
from fi_resources.stages import StageResult
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
def round1_instantiator(
    context: dg.AssetExecutionContext,
    silver_instantiations: pd.DataFrame,
    models: ModelsResource,
    student_settings: StudentSettingsResource,
    instantiation_settings: InstantiationSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Round 1 of the distillation: the base LM fine-tuned on the teacher's silver instantiations. With none
    (a teacher whose every instantiation was dropped, counted by reason in `silver_instantiations`), the
    base LM is saved untrained so the graph still runs and counts what it makes; the `instantiator_trained`
    check then fails and says so."""
    return _train_instantiator(
        context, "round1_instantiator", stage.instantiator_examples(silver_instantiations), models,
        student_settings, instantiation_settings, warehouse, {"round": 1},
    )  # fmt: skip


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def round2_instantiations(
    context: dg.AssetExecutionContext,
    round1_instantiator: Artifact,
    document_matches: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    instantiation_settings: InstantiationSettingsResource,
    judge_settings: JudgeSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Round 2's training set: the round-1 student's own instantiations that the judge passes, balanced over
    answer length, `<fi>` count and topic, plus ~5 % null targets. Empty when `instantiator_rounds` is 1."""
    parts = models.parts()
    rounds = instantiation_settings.instantiator_rounds
    return table_output(
        stage.round2_instantiations(
            document_matches,
            documents,
            parts.backend("instantiator", round1_instantiator.path, version=round1_instantiator.data_version)
            if rounds == 2
            else None,
            f"instantiator@{round1_instantiator.data_version}",
            parts.judge(judge_settings.judge) if rounds == 2 else None,
            parts.store.token_counter(),
            instantiation_settings,
            judge_settings,
            progress_logger(context, "round 2"),
        )
    )


@dg.asset(group_name=GROUP, code_version="4", pool=LM_POOL, kinds={"pytorch"})
def instantiator(
    context: dg.AssetExecutionContext,
    round1_instantiator: Artifact,
    round2_instantiations: pd.DataFrame,
    silver_instantiations: pd.DataFrame,
    models: ModelsResource,
    student_settings: StudentSettingsResource,
    instantiation_settings: InstantiationSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The instantiator the pairs are made with: a fresh copy of the base LM trained on round 2's examples
    (and the silver set, with `round2_keep_silver`), or the round-1 student as it is when there is no round
    2 (`instantiator_rounds` 1, or no round-1 output passed the judge)."""
    round2 = stage.instantiator_examples(round2_instantiations)
    if not round2:
        if instantiation_settings.instantiator_rounds == 2:
            context.log.warning("round 2 has no examples: the instantiator is the round-1 student")
        out = warehouse.get().staged_copy("instantiator", Path(round1_instantiator.path))
        return artifact_output(out, StageResult(dict(round1_instantiator.info)), {"round": 1})
    silver = (
        stage.instantiator_examples(silver_instantiations)
        if instantiation_settings.round2_keep_silver
        else []
    )
    return _train_instantiator(
        context, "instantiator", round2 + silver, models, student_settings, instantiation_settings, warehouse,
        {"round": 2, "round2_examples": len(round2), "silver_examples": len(silver)},
    )  # fmt: skip


def _train_instantiator(
    context, asset, examples, models, student_settings, instantiation_settings, warehouse, facts
) -> dg.Output[Artifact]:
    """A fresh copy of the base LM fine-tuned on `examples` (prompt, target) into `asset`'s artifact store."""
    if not examples:
        context.log.warning("no silver instantiations: the instantiator is the untrained base LM")
    parts, out = models.parts(), warehouse.get().staging_dir(asset)
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
    return artifact_output(out, result, {**facts, **untrained})


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
