"""Stage 4's quality control: a labelled judge check set and the judge's validation on it."""

import time
from collections import Counter

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, counts_md, md_sample, progress_logger
from fi_resources.judge import check_material
from fi_resources.logic.judge_check import build_check_set, twins_as_records, win_stats
from fi_resources.resources import ModelsResource, PipelineSettings

GROUP = "judging"


@dg.asset(group_name=GROUP, code_version="1", kinds={"duckdb"})
def judge_check_set(
    silver_instantiations: pd.DataFrame, documents: pd.DataFrame, settings: PipelineSettings
) -> dg.Output[pd.DataFrame]:
    """Correct pairs (teacher silver instantiations + real chatterbot Q&A) each twinned with corrupted copies:
    answer or instruction swapped in from another pair, answer truncated, an off-topic sentence of another
    document, repeated and shuffled text. Half the correct pairs are 'dev' (tuning), half 'test' (reported)."""
    base, off_topic = check_material(
        silver_instantiations, documents, settings.judge_check_pairs, settings.seed
    )
    try:
        twins = build_check_set(base, off_topic, seed=settings.seed)
    except ValueError as exc:
        raise dg.Failure(f"cannot build the judge check set: {exc}") from exc
    df = pd.DataFrame(twins_as_records(twins))
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "correct_pairs": int(df["base_id"].nunique()),
            "by_source": dg.MetadataValue.json(
                {k: int(v) for k, v in df.groupby("source")["base_id"].nunique().items()}
            ),
            "by_split": dg.MetadataValue.json({k: int(v) for k, v in Counter(df["split"]).items()}),
            "corruptions": counts_md(dict(Counter(df["corruption"]))),
            "sample": md_sample(
                df.drop_duplicates("corruption"),
                ["corruption", "instruction", "corrupted_instruction", "corrupted_answer"],
                n=6,
                width=120,
            ),
        },
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def judge_validation(
    context: dg.AssetExecutionContext,
    judge_check_set: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """How often the judge scores a correct pair above its corrupted twin, on the held-out 'test' half (the
    headline) and the 'dev' half the embedded judge was tuned on, per corruption type."""
    judge = models.judge(settings.judge)
    df = judge_check_set
    pairs = list(
        dict.fromkeys(
            list(zip(df["instruction"], df["answer"], strict=True))
            + list(zip(df["corrupted_instruction"], df["corrupted_answer"], strict=True))
        )
    )
    start = time.perf_counter()
    scored = judge.score(
        [i for i, _ in pairs], [a for _, a in pairs], progress=progress_logger(context, "judging check set")
    )
    seconds = time.perf_counter() - start
    by_pair = dict(zip(pairs, scored, strict=True))

    def col(instr: str, ans: str, key: str) -> list:
        return [by_pair[(i, a)][key] for i, a in zip(df[instr], df[ans], strict=True)]

    out = df[["base_id", "source", "split", "corruption"]].copy()
    out["correct_value"] = col("instruction", "answer", "judge_value")
    out["corrupted_value"] = col("corrupted_instruction", "corrupted_answer", "judge_value")
    out["correct_score"] = pd.array(col("instruction", "answer", "judge_score"), dtype="Int64")
    out["corrupted_score"] = pd.array(
        col("corrupted_instruction", "corrupted_answer", "judge_score"), dtype="Int64"
    )
    out["correct_wins"] = out["correct_value"].astype(float) > out["corrupted_value"].astype(float)
    out["judge"] = judge.name

    rows = []
    for split in ("test", "dev"):
        part = out[out["split"] == split]
        rows.append(_win_row(split, "all", part, settings.keep_score))
        rows += [_win_row(split, kind, g, settings.keep_score) for kind, g in part.groupby("corruption")]
    summary = {r["split"]: r["win_rate"] for r in rows if r["corruption"] == "all"}
    table = pd.DataFrame(rows)
    unscored = sum(r["judge_score"] is None for r in scored)
    context.log.info(f"judge validation: test win rate {summary['test']:.3f}, dev {summary['dev']:.3f}")
    return dg.Output(
        out,
        metadata={
            "judge": judge.name,
            "test_win_rate": round(summary["test"], 3),
            "dev_win_rate": round(summary["dev"], 3),
            "win_rates": dg.MetadataValue.md(table.to_markdown(index=False)),
            "unscored_pairs": unscored,
            "pairs_scored": len(pairs),
            "seconds": round(seconds, 1),
            "pairs_per_s": round(len(pairs) / seconds, 2) if seconds else 0.0,
            "note": "win = the correct pair's continuous judge value is strictly higher than its twin's; "
            "win_rate_1to5 compares the integer scores (ties are not wins)",
        },
    )


def _win_row(split: str, corruption: str, part: pd.DataFrame, keep_score: int) -> dict:
    """Win rates on the continuous value and on the 1–5 score, and how often each side would be kept."""
    cont = win_stats(
        part["correct_value"].astype(float).tolist(), part["corrupted_value"].astype(float).tolist()
    )
    ints = win_stats(
        part["correct_score"].astype(float).tolist(), part["corrupted_score"].astype(float).tolist()
    )
    return {
        "split": split,
        "corruption": corruption,
        "twins": cont.twins,
        "win_rate": round(cont.win_rate, 3),
        "win_rate_1to5": round(ints.win_rate, 3),
        "tie_rate_1to5": round(ints.tie_rate, 3),
        "correct_kept": round(float((part["correct_score"] >= keep_score).mean()), 3),
        "corrupted_kept": round(float((part["corrupted_score"] >= keep_score).mean()), 3),
    }
