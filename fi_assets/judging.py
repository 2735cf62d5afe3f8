"""Stage 4's quality control assets: a labelled judge check set and the judge's validation on it. Thin
adapters over `fi_resources.stages.judging`."""

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, progress_logger, table_output
from fi_resources.resources import JudgeSettingsResource, ModelsResource
from fi_resources.sources import chatterbot_qa_pairs
from fi_resources.stages import judging as stage

GROUP = "judging"


@dg.asset(group_name=GROUP, code_version="1", kinds={"duckdb"})
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


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
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
