"""Stage 3–4: silver instantiations → distilled instantiator → expanded pairs → judged pairs."""

import json
import time
from collections import Counter

import dagster as dg
import pandas as pd

from fi_assets.common import (
    LM_POOL,
    backend_metadata,
    counts_md,
    document_shards,
    md_sample,
    progress_logger,
    train_student,
)
from fi_resources.logic.excerpts import ELLIPSIS, EXCERPT_CLOSE, EXCERPT_OPEN, ExcerptError, expand_excerpts
from fi_resources.logic.parsing import OutputError, format_instantiator_target, parse_instantiator_output
from fi_resources.logic.prompts import PROMPT_VERSION, instantiator_prompt
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.teacher import incompatible_pairs
from fi_resources.warehouse import Artifact

GROUP = "generation"

PAIR_COLUMNS = [
    "pair_id", "doc_id", "shard", "template_id", "query_id", "template", "instruction", "answer_markup",
    "answer", "excerpt_spans", "grounding_ratio", "status", "raw_output", "decoded_tokens", "model",
    "prompt_version",
]  # fmt: skip


SILVER_COLUMNS = ["doc_id", "template_id", "prompt", "target", "reason", "deliberately_incompatible"]


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def silver_instantiations(
    document_matches: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Teacher instantiations of sampled matches, plus ~5 % deliberately incompatible pairs with target `null`."""
    docs = documents.set_index("doc_id")
    teacher = models.teacher_for(settings)
    pool = document_matches.sample(
        n=min(len(document_matches), 3 * settings.silver_instantiations), random_state=settings.seed
    )
    rows = []
    for m in pool.itertuples():
        if sum(r["reason"] == "ok" for r in rows) >= settings.silver_instantiations:
            break
        doc = docs.loc[m.doc_id]
        out = teacher.instantiate(m.template, doc["title"], doc["text"])
        target = (
            format_instantiator_target(out.instruction, out.answer_markup) if out.reason == "ok" else None
        )
        rows.append(_silver_row(m.doc_id, m.template_id, m.template, doc["text"], target, out.reason, False))
    templates = dict(zip(document_matches["template_id"], document_matches["template"], strict=False))
    ok_pairs = [(r["template_id"], r["doc_id"]) for r in rows if r["reason"] == "ok"]
    for template_id, doc_id in incompatible_pairs(ok_pairs, settings.incompatible_fraction, settings.seed):
        tpl = templates[template_id]
        rows.append(
            _silver_row(doc_id, template_id, tpl, docs.at[doc_id, "text"], "null", "incompatible", True)
        )
    df = pd.DataFrame(rows, columns=SILVER_COLUMNS).assign(teacher=teacher.name)
    usable = df["target"].notna()
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "training_examples": int(usable.sum()),
            "null_targets": int((df["target"] == "null").sum()),
            "teacher_outcomes": counts_md(dict(Counter(df["reason"]))),
            "sample": md_sample(df[usable], ["target"], width=240),
        },
    )


def _silver_row(doc_id, template_id, template, text, target, reason, incompatible) -> dict:
    return {
        "doc_id": doc_id,
        "template_id": template_id,
        "prompt": instantiator_prompt(template, text),
        "target": target,
        "reason": reason,
        "deliberately_incompatible": incompatible,
    }


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"pytorch"})
def instantiator(
    context: dg.AssetExecutionContext,
    silver_instantiations: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Student instantiator: the base LM fine-tuned on the teacher's silver instantiations."""
    train = silver_instantiations[silver_instantiations["target"].notna()]
    if train.empty:
        raise dg.Failure("no silver instantiations to train the instantiator on")
    examples = [(p, " " + t) for p, t in zip(train["prompt"], train["target"], strict=True)]
    return train_student(
        context,
        "instantiator",
        examples,
        epochs=settings.instantiator_epochs,
        batch_size=4,
        models=models,
        settings=settings,
        warehouse=warehouse,
        # One token each instead of 3-4 (see PipelineSettings.markup_tokens for why this is off by default).
        new_tokens=(EXCERPT_OPEN, ELLIPSIS, EXCERPT_CLOSE) if settings.markup_tokens else (),
    )


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def instantiated_pairs(
    context: dg.AssetExecutionContext,
    document_matches: pd.DataFrame,
    documents: pd.DataFrame,
    instantiator: Artifact,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """The student fills each matched template; `<excerpt>` markers are expanded from the document."""
    docs = documents.set_index("doc_id")
    student = models.backend("instantiator", instantiator.path, version=instantiator.data_version)
    tokenizer = models.tokenizer()  # the students' tokenizer is their base model's
    prompts = [
        instantiator_prompt(t, docs.at[d, "text"])
        for t, d in zip(document_matches["template"], document_matches["doc_id"], strict=True)
    ]
    raw = student.generate(prompts, max_new_tokens=80, progress=progress_logger(context, "instantiating"))
    rows = []
    for m, text in zip(document_matches.itertuples(), raw, strict=True):
        row = {
            "pair_id": m.match_id,
            "doc_id": m.doc_id,
            "shard": m.shard,
            "template_id": m.template_id,
            "query_id": m.query_id,
            "template": m.template,
            "instruction": None,
            "answer_markup": None,
            "answer": None,
            "excerpt_spans": "[]",
            "grounding_ratio": None,
            "status": "ok",
            "raw_output": text,
            "decoded_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
            "model": f"instantiator@{instantiator.data_version}",
            "prompt_version": PROMPT_VERSION,
        }
        try:
            parsed = parse_instantiator_output(text)
            if parsed is None:
                row["status"] = "refused_null"
            else:
                row["instruction"], row["answer_markup"] = parsed
                expanded = expand_excerpts(parsed[1], docs.at[m.doc_id, "text"])
                row["answer"] = expanded.text
                row["excerpt_spans"] = json.dumps([list(s) for s in expanded.doc_spans])
                row["grounding_ratio"] = expanded.grounding_ratio
                if expanded.grounding_ratio < settings.min_grounding:
                    row["status"] = "low_grounding"
        except (OutputError, ExcerptError) as exc:
            row["status"] = exc.reason
        rows.append(row)
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    ok = df[df["status"] == "ok"]
    answer_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in ok["answer"])
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "valid_pairs": len(ok),
            "valid_share": round(len(ok) / max(1, len(df)), 3),
            "outcomes": counts_md(dict(Counter(df["status"])), total=len(df)),
            "mean_grounding_ratio": round(float(ok["grounding_ratio"].mean()), 3) if len(ok) else 0.0,
            # Tokens of the raw outputs (cached ones too): what excerpt copying is measured against.
            "decoded_tokens": int(df["decoded_tokens"].sum()),
            "decoded_tokens_per_valid_answer_token": round(
                float(ok["decoded_tokens"].sum()) / answer_tokens, 3
            )
            if answer_tokens
            else "n/a",
            **backend_metadata(student),
            "sample": md_sample(ok, ["instruction", "answer_markup", "answer"], width=200),
        },
    )


JUDGE_COLUMNS = ["judge_score", "judge_value", "judge_reason", "judge_feedback", "judge_error"]


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def judged_pairs(
    context: dg.AssetExecutionContext,
    instantiated_pairs: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """The judge scores every valid pair 1–5 (the paper's rubric); pairs scoring `keep_score` (4) or more are
    kept. A pair whose judge output cannot be parsed gets no score (and is not kept); the reason is recorded."""
    valid = instantiated_pairs[instantiated_pairs["status"] == "ok"].reset_index(drop=True)
    judge = models.judge(settings.judge)
    start = time.perf_counter()
    scored = judge.score(
        valid["instruction"].tolist(), valid["answer"].tolist(), progress=progress_logger(context, "judging")
    )
    seconds = time.perf_counter() - start
    scores = pd.DataFrame(
        scored, columns=list(dict.fromkeys([*(scored[0] if scored else {}), *JUDGE_COLUMNS]))
    )
    df = pd.concat([valid, scores], axis=1)
    df["judge_score"] = pd.array(df["judge_score"], dtype="Int64")
    df["judge_value"] = df["judge_value"].astype("float64")
    df["judge"] = judge.name
    df["kept"] = (df["judge_score"] >= settings.keep_score).fillna(False).astype(bool)
    dist = {str(k): int(v) for k, v in df["judge_score"].value_counts().sort_index().items()}
    unscored = int(df["judge_score"].isna().sum())
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "judge": judge.name,
            "kept": int(df["kept"].sum()),
            "pass_rate": round(float(df["kept"].mean()), 3) if len(df) else 0.0,
            "paper_pass_rate": 0.58,
            "score_distribution": dg.MetadataValue.json(dist),
            "unscored": unscored,
            "unscored_reasons": counts_md(dict(Counter(df["judge_error"].dropna().str.split(":").str[0]))),
            "pairs_per_s": round(len(df) / seconds, 2) if seconds else 0.0,
            "sample": md_sample(
                df.sort_values("judge_value", ascending=False),
                ["judge_score", "instruction", "answer", "judge_reason"],
            ),
        },
    )
