"""Stage 1: real user queries → silver templates (teacher) → distilled genericizer → template bank."""

from collections import Counter

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, backend_metadata, counts_md, md_sample, progress_logger, train_student
from fi_resources.logic.parsing import OutputError, format_genericizer_target, parse_genericizer_output
from fi_resources.logic.prompts import PROMPT_VERSION, genericizer_prompt
from fi_resources.logic.templates import validate_template
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.sources import chatterbot_questions, read_user_query_files, stable_id
from fi_resources.warehouse import Artifact

GROUP = "templates"


@dg.asset(group_name=GROUP, code_version="1", kinds={"duckdb"})
def user_queries(settings: PipelineSettings, warehouse: WarehouseResource) -> dg.Output[pd.DataFrame]:
    """Real user questions: chatterbot-corpus plus any query files dropped in the query inbox."""
    folder = settings.inbox("queries", warehouse.home)
    df = pd.concat([chatterbot_questions(), read_user_query_files(folder)], ignore_index=True)
    raw = len(df)
    df["query"] = df["query"].str.strip()
    df = df[df["query"].str.len().between(3, 500)].drop_duplicates("query").reset_index(drop=True)
    df.insert(0, "query_id", [stable_id(q) for q in df["query"]])
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "dropped_duplicates_or_bad_length": raw - len(df),
            "sources": dg.MetadataValue.json(df["source"].value_counts().to_dict()),
            "inbox": dg.MetadataValue.path(str(folder)),
            "sample": md_sample(df, ["query_id", "query", "source"]),
        },
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def silver_templates(
    context: dg.AssetExecutionContext,
    user_queries: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """The teacher genericizes a random sample of queries into templates + compatible document descriptions."""
    sample = user_queries.sample(
        n=min(settings.silver_templates, len(user_queries)), random_state=settings.seed
    )
    teacher = models.teacher_for(settings)
    out = teacher.genericize(sample["query"].tolist(), progress=progress_logger(context, "typing spans"))
    df = pd.DataFrame(
        {
            "query_id": sample["query_id"].to_numpy(),
            "query": sample["query"].to_numpy(),
            "template": [o.template for o in out],
            "compatible_document_description": [o.description for o in out],
            "reason": [o.reason or "ok" for o in out],
            "teacher": teacher.name,
        }
    )
    reasons = Counter(df["reason"])
    valid = df[df["reason"] == "ok"]
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "valid_templates": len(valid),
            "valid_share": round(len(valid) / max(1, len(df)), 3),
            "outcomes": counts_md(dict(reasons)),
            **backend_metadata(teacher.lm),
            "sample": md_sample(valid, ["query", "template", "compatible_document_description"]),
        },
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def genericizer(
    context: dg.AssetExecutionContext,
    silver_templates: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Student genericizer: the base LM fine-tuned on the teacher's valid silver templates."""
    train = silver_templates[silver_templates["reason"] == "ok"]
    if train.empty:
        raise dg.Failure("no valid silver templates to train the genericizer on")
    examples = [
        (genericizer_prompt(q), " " + format_genericizer_target(t, d))
        for q, t, d in zip(
            train["query"], train["template"], train["compatible_document_description"], strict=True
        )
    ]
    return train_student(
        context,
        "genericizer",
        examples,
        epochs=settings.genericizer_epochs,
        batch_size=8,
        models=models,
        settings=settings,
        warehouse=warehouse,
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def query_templates(
    context: dg.AssetExecutionContext,
    user_queries: pd.DataFrame,
    genericizer: Artifact,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """The template bank: the student genericizer run over the queries; outputs validated by the <fi> grammar."""
    n = len(user_queries) if settings.max_queries <= 0 else min(settings.max_queries, len(user_queries))
    todo = user_queries.sample(n=n, random_state=settings.seed + 1).sort_index()
    student = models.backend("genericizer", genericizer.path, version=genericizer.data_version)
    raw = student.generate(
        [genericizer_prompt(q) for q in todo["query"]],
        max_new_tokens=96,
        stop="\n",
        progress=progress_logger(context, "genericizing"),
    )
    rows = []
    for qid, query, text in zip(todo["query_id"], todo["query"], raw, strict=True):
        template = description = None
        n_slots, reason = 0, "ok"
        try:
            template_text, description = parse_genericizer_output(text)
            tpl, reason = validate_template(template_text, query)
            if tpl is not None:
                template, n_slots, reason = tpl.text, tpl.n_slots, "ok"
        except OutputError as exc:
            reason = exc.reason
        rows.append(
            {
                "template_id": stable_id(qid, str(template)),
                "query_id": qid,
                "query": query,
                "template": template,
                "compatible_document_description": description if template else None,
                "n_slots": n_slots,
                "valid": template is not None,
                "reason": reason,
                "raw_output": text,
                "model": f"genericizer@{genericizer.data_version}",
                "prompt_version": PROMPT_VERSION,
            }
        )
    df = pd.DataFrame(rows)
    valid = df[df["valid"]]
    dupes = valid.duplicated("template").sum()
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "valid_templates": len(valid),
            "valid_share": round(len(valid) / max(1, len(df)), 3),
            "unique_templates": int(valid["template"].nunique()),
            "duplicate_templates": int(dupes),
            "outcomes": counts_md(dict(Counter(df["reason"]))),
            "slot_count_distribution": dg.MetadataValue.json(
                {str(k): int(v) for k, v in valid["n_slots"].value_counts().sort_index().items()}
            ),
            **backend_metadata(student),
            "sample": md_sample(valid, ["query", "template", "compatible_document_description"]),
        },
    )
