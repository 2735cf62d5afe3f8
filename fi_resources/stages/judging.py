"""Stage 4's quality control: a check set of correct pairs twinned with corrupted copies, and the judge's
validation on it (how often it scores the correct pair above its twin)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from fi_resources.logic.audit import confusion
from fi_resources.logic.judge_check import (
    MIN_ANSWER_WORDS,
    BasePair,
    build_check_set,
    twins_as_records,
    win_stats,
)
from fi_resources.logic.pairs import read_pair
from fi_resources.logic.prompts import split_sentences
from fi_resources.parts import Judge, Progress
from fi_resources.settings import JudgeSettings
from fi_resources.sources import stable_id
from fi_resources.stages import Counts, Sample, StageResult


def silver_base_pairs(silver: pd.DataFrame, documents: pd.DataFrame) -> list[BasePair]:
    """The teacher's usable silver instantiations, excerpts expanded from their documents, as base pairs."""
    texts = dict(zip(documents["doc_id"], documents["text"], strict=True))
    out = []
    for row in silver.itertuples():
        if row.reason != "ok" or not isinstance(row.target, str) or row.doc_id not in texts:
            continue
        pair = read_pair(row.target, texts[row.doc_id])
        if pair.ok:
            out.append(
                BasePair(
                    f"silver:{row.doc_id}:{row.template_id}",
                    "silver",
                    row.doc_id,
                    pair.instruction,
                    pair.answer,
                )
            )
    return out


def chatterbot_base_pairs(pairs: Sequence[tuple[str, str]]) -> list[BasePair]:
    """Real hand-written Q&A turns (prose answers only: code answers are unlike the pipeline's pairs)."""
    return [
        BasePair(f"chatterbot:{stable_id(q, a)}", "chatterbot", f"chatterbot:{stable_id(a)}", q, a)
        for q, a in pairs
        if "```" not in a
    ]


def check_material(
    silver: pd.DataFrame,
    documents: pd.DataFrame,
    qa_pairs: Sequence[tuple[str, str]],
    pairs_per_source: int,
    seed: int,
) -> tuple[list[BasePair], list[tuple[str, str]]]:
    """Base pairs (up to `pairs_per_source` silver + real Q&A, seeded sample) and off-topic sentences. Each
    source is drawn with its own generator, so the real Q&A drawn do not change when the silver pool does."""
    base: list[BasePair] = []
    for k, pool in enumerate((silver_base_pairs(silver, documents), chatterbot_base_pairs(qa_pairs))):
        pool = [p for p in pool if len(p.answer.split()) >= MIN_ANSWER_WORDS]
        base += random.Random(seed * 1000 + k).sample(pool, min(pairs_per_source, len(pool)))
    off_topic = [
        (doc_id, text[s:e])
        for doc_id, text in zip(documents["doc_id"], documents["text"], strict=True)
        for s, e in split_sentences(text)
        if len(text[s:e].split()) >= MIN_ANSWER_WORDS
    ]
    return base, off_topic


def judge_check_set(
    silver: pd.DataFrame,
    documents: pd.DataFrame,
    qa_pairs: Sequence[tuple[str, str]],
    settings: JudgeSettings,
) -> StageResult[pd.DataFrame]:
    """Correct pairs (silver instantiations + real Q&A) each twinned with corrupted copies; half the correct
    pairs 'dev' (tuning), half 'test' (reported). Raises ValueError when there is too little material."""
    base, off_topic = check_material(silver, documents, qa_pairs, settings.judge_check_pairs, settings.seed)
    df = pd.DataFrame(twins_as_records(build_check_set(base, off_topic, seed=settings.seed)))
    return StageResult(
        df,
        {
            "rows": len(df),
            "correct_pairs": int(df["base_id"].nunique()),
            "by_source": {k: int(v) for k, v in df.groupby("source")["base_id"].nunique().items()},
            "by_split": {k: int(v) for k, v in Counter(df["split"]).items()},
            "corruptions": Counts(dict(Counter(df["corruption"]))),
            "sample": Sample(
                df.drop_duplicates("corruption"),
                ["corruption", "instruction", "corrupted_instruction", "corrupted_answer"],
                n=6,
                width=120,
            ),
        },
    )


def validate_judge(
    check_set: pd.DataFrame, judge: Judge, settings: JudgeSettings, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """How often the judge scores a correct pair above its corrupted twin, on the held-out 'test' half (the
    headline) and the 'dev' half, per corruption type. Each distinct pair is scored once."""
    df = check_set
    pairs = list(
        dict.fromkeys(
            list(zip(df["instruction"], df["answer"], strict=True))
            + list(zip(df["corrupted_instruction"], df["corrupted_answer"], strict=True))
        )
    )
    start = time.perf_counter()
    scored = judge.score([i for i, _ in pairs], [a for _, a in pairs], progress=progress)
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
    return StageResult(
        out,
        {
            "judge": judge.name,
            "test_win_rate": round(summary["test"], 3),
            "dev_win_rate": round(summary["dev"], 3),
            "win_rates": pd.DataFrame(rows),
            "unscored_pairs": sum(r["judge_score"] is None for r in scored),
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
        "correct_kept": _kept_share(part["correct_score"], keep_score),
        "corrupted_kept": _kept_share(part["corrupted_score"], keep_score),
    }


def _kept_share(scores: pd.Series, keep_score: int) -> float:
    """Share of pairs scoring `keep_score` or more; an unscored pair (the judge's answer unparseable) is not kept."""
    return round(float(scores.ge(keep_score).fillna(False).mean()), 3) if len(scores) else 0.0


def audit_judge(
    labels: pd.DataFrame, judge: Judge, settings: JudgeSettings, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """Today's judge re-scores every hand-labelled audit pair (`logic.audit`); precision (sensible among
    kept), recall and the confusion table per corpus and split. The headline is the held-out split: no
    signal or threshold is tuned on it."""
    scored = judge.score(
        labels["instruction"].tolist(), labels["answer"].tolist(), progress, labels["template"].tolist()
    )
    df = labels.rename(columns={"kept": "kept_by_run"}).copy()
    df["judge_score"] = pd.array([s["judge_score"] for s in scored], dtype="Int64")
    df["judge_reason"] = [s["judge_reason"] for s in scored]
    df["kept"] = (df["judge_score"] >= settings.keep_score).fillna(False).astype(bool)
    df["judge"] = judge.name
    heldout = confusion(df.assign(all="all"), ["all", "split"]).set_index("split")
    row = heldout.loc["heldout"] if "heldout" in heldout.index else None
    return StageResult(
        df,
        {
            "judge": judge.name,
            "labelled_pairs": len(df),
            "heldout_precision": row["precision"] if row is not None else None,
            "heldout_recall": row["recall"] if row is not None else None,
            "heldout_kept": int(row["kept"]) if row is not None else 0,
            "confusion_by_corpus": confusion(df, ["corpus", "split"]),
            "sample": Sample(df[df["kept"]], ["corpus", "sensible", "instruction", "answer"], width=160),
        },
    )
