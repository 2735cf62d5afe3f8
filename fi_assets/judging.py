"""Stage 4's quality control assets: a labelled judge check set and the judge's validation on it. Thin
adapters over `fi_resources.stages.judging`."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, progress_logger, table_output
from fi_resources.logic.audit import AUDIT_LABELS, load_labels
from fi_resources.resources import JudgeSettingsResource, ModelsResource
from fi_resources.sources import chatterbot_qa_pairs
from fi_resources.stages import judging as stage

GROUP = "judging"


@dg.asset(group_name=GROUP, code_version="2", kinds={"duckdb"})
def judge_check_set(
    silver_instantiations: pd.DataFrame, documents: pd.DataFrame, judge_settings: JudgeSettingsResource
) -> dg.Output[pd.DataFrame]:
    """Correct pairs (teacher silver instantiations + real chatterbot Q&A) each twinned with corrupted copies:
    answer or instruction swapped in from another pair, answer truncated, an off-topic sentence of another
    document, repeated and shuffled text. Half the correct pairs are 'dev' (tuning), half 'test' (reported)."""
    try:
        result = stage.judge_check_set(
            silver_instantiations, documents, chatterbot_qa_pairs(), judge_settings
        )
    except ValueError as exc:
        raise dg.Failure(f"cannot build the judge check set: {exc}") from exc
    return table_output(result)


@dg.asset(group_name=GROUP, code_version="6", pool=LM_POOL, kinds={"duckdb"})
def judge_validation(
    context: dg.AssetExecutionContext,
    judge_check_set: pd.DataFrame,
    models: ModelsResource,
    judge_settings: JudgeSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """How often the judge scores a correct pair above its corrupted twin, on the held-out 'test' half (the
    headline) and the 'dev' half the embedded judge was tuned on, per corruption type."""
    judge = models.parts().judge(judge_settings.judge)
    result = stage.validate_judge(
        judge_check_set, judge, judge_settings, progress_logger(context, "judging check set")
    )
    context.log.info(
        f"judge validation: test win rate {result.stats['test_win_rate']:.3f}, dev {result.stats['dev_win_rate']:.3f}"
    )
    return table_output(result)


@dg.asset(group_name=GROUP, code_version="6", pool=LM_POOL, kinds={"duckdb"})
def judge_audit(
    context: dg.AssetExecutionContext, models: ModelsResource, judge_settings: JudgeSettingsResource
) -> dg.Output[pd.DataFrame]:
    """Today's judge on the hand-labelled audit set (audit/labels, rubric audit/RUBRIC.md): precision among
    kept pairs, recall and a confusion table per corpus and split. Rerun it after adding labels."""
    folder = Path(judge_settings.audit_labels) if judge_settings.audit_labels else AUDIT_LABELS
    try:
        labels = load_labels(folder)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    judge = models.parts().judge(judge_settings.judge)
    result = stage.audit_judge(labels, judge, judge_settings, progress_logger(context, "judging audit set"))
    context.log.info(
        f"judge on the held-out audit split: precision {result.stats['heldout_precision']}, "
        f"recall {result.stats['heldout_recall']}, kept {result.stats['heldout_kept']}"
    )
    return table_output(result)
