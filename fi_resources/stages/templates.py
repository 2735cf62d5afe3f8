"""Stage 1 (paper §1): real user queries → silver templates (teacher) → genericizer examples → template bank
(the student genericizer's outputs, validated by the strict `<fi>` grammar)."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from fi_resources.logic.parsing import OutputError, format_genericizer_target, parse_genericizer_output
from fi_resources.logic.prompts import (
    PROMPT_VERSION,
    QUESTION_WRITER_VERSION,
    clean_written_question,
    genericizer_prompt,
    question_openers,
    question_writer_prompt,
)
from fi_resources.logic.released import append_released_rows, bank_frame, bank_row
from fi_resources.logic.templates import follows_query, question_form_reason, validate_template
from fi_resources.parts import Genericizer, Progress, TextGenerator
from fi_resources.released import iter_bank_chunks
from fi_resources.settings import TemplateBankSettings
from fi_resources.sources import stable_id
from fi_resources.stages import (
    Counts,
    Sample,
    StageResult,
    backend_stats,
    teacher_stats,
    value_counts,
)


def write_questions(
    articles: list[tuple[str, str]], writer: TextGenerator, writer_name: str, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """The teacher writes search-style questions about each of the first two paragraphs of every article
    (`logic.prompts.question_writer_prompt`), one unprimed and one per opener the paragraph can answer
    (`question_openers`); a completion that is not one short question is dropped and
    counted by reason. Rows: query, source (the writer and the article), article."""
    items = []
    for title, text in articles:
        paragraphs = [p for p in text.split("\n\n") if len(p) > 200 and not p.lstrip().startswith("=")]
        items += [(title, p, opener) for p in paragraphs[:2] for opener in question_openers(p)]
    raw = writer.generate(
        [question_writer_prompt(p, opener=o) for _, p, o in items],
        max_new_tokens=32,
        stop="\n",
        progress=progress,
    )
    rows, reasons = [], Counter()
    for (title, _, opener), text in zip(items, raw, strict=True):
        question, reason = clean_written_question(text, opener)
        reasons[reason] += 1
        if question is not None:
            rows.append(
                {
                    "query": question,
                    "source": f"written/{writer_name}/{QUESTION_WRITER_VERSION}",
                    "article": title,
                }
            )
    df = pd.DataFrame(rows, columns=["query", "source", "article"])
    return StageResult(
        df,
        {
            "articles": len(articles),
            "prompts": len(items),
            "questions": len(df),
            "outcomes": Counts(dict(reasons), total=len(items)),
            "sample": Sample(df, ["article", "query"]),
        },
    )


def collect_user_queries(sources: list[pd.DataFrame]) -> StageResult[pd.DataFrame]:
    """Queries from every source (columns `query`, `source`), stripped, 3–500 characters, deduplicated, each
    with a stable `query_id`."""
    df = pd.concat(sources, ignore_index=True)
    raw = len(df)
    df["query"] = df["query"].str.strip()
    df = df[df["query"].str.len().between(3, 500)].drop_duplicates("query").reset_index(drop=True)
    df.insert(0, "query_id", [stable_id(q) for q in df["query"]])
    return StageResult(
        df,
        {
            "rows": len(df),
            "dropped_duplicates_or_bad_length": raw - len(df),
            "sources": df["source"].value_counts().to_dict(),
            "sample": Sample(df, ["query_id", "query", "source"]),
        },
    )


def silver_templates(
    user_queries: pd.DataFrame,
    teacher: Genericizer,
    settings: TemplateBankSettings,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """The teacher genericizes a seeded random sample of the queries into templates + compatible document
    descriptions; a query it cannot genericize keeps its reason."""
    sample = user_queries.sample(
        n=min(settings.silver_templates, len(user_queries)), random_state=settings.seed
    )
    out = teacher.genericize(sample["query"].tolist(), progress=progress)
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
    valid = df[df["reason"] == "ok"]
    stats: dict[str, object] = {
        "rows": len(df),
        "valid_templates": len(valid),
        "valid_share": round(len(valid) / max(1, len(df)), 3),
        "outcomes": Counts(dict(Counter(df["reason"]))),
    }
    stats |= teacher_stats(teacher)
    stats["sample"] = Sample(valid, ["query", "template", "compatible_document_description"])
    return StageResult(df, stats)


def genericizer_examples(silver: pd.DataFrame) -> list[tuple[str, str]]:
    """(prompt, target) pairs of the teacher's valid silver templates, to fine-tune the genericizer on."""
    train = silver[silver["reason"] == "ok"]
    return [
        (genericizer_prompt(q), " " + format_genericizer_target(t, d))
        for q, t, d in zip(
            train["query"], train["template"], train["compatible_document_description"], strict=True
        )
    ]


def _bank_stats(df: pd.DataFrame) -> dict[str, object]:
    """The stats of a `query_templates` frame that the genericizer's bank and an imported one both report,
    under the same keys so the two compare."""
    valid = df[df["valid"]]
    return {
        "rows": len(df),
        "valid_templates": len(valid),
        "valid_share": round(len(valid) / max(1, len(df)), 3),
        "unique_templates": int(valid["template"].nunique()),
        "duplicate_templates": int(valid.duplicated("template").sum()),
        "outcomes": Counts(dict(Counter(df["reason"]))),
        "slot_count_distribution": value_counts(valid["n_slots"]),
    }


def template_bank(
    user_queries: pd.DataFrame,
    student: TextGenerator,
    student_name: str,
    settings: TemplateBankSettings,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """The student genericizer run over (a seeded sample of) the queries; each output validated by the `<fi>`
    grammar, invalid ones kept with their reason."""
    n = len(user_queries) if settings.max_queries <= 0 else min(settings.max_queries, len(user_queries))
    todo = user_queries.sample(n=n, random_state=settings.seed + 1).sort_index()
    raw = student.generate(
        [genericizer_prompt(q) for q in todo["query"]], max_new_tokens=96, stop="\n", progress=progress
    )
    rows = []
    for qid, query, text in zip(todo["query_id"], todo["query"], raw, strict=True):
        template = description = None
        reason = "ok"
        try:
            template_text, description = parse_genericizer_output(text)
            tpl, reason = validate_template(template_text, query)
            # A well-formed template can still be no question a user would ask (a statement, a greeting).
            if tpl is not None and (unaskable := question_form_reason(tpl)):
                tpl, reason = None, unaskable
            if tpl is not None and settings.require_faithful_templates and not follows_query(tpl, query):
                tpl, reason = None, "not_faithful"
            if tpl is not None:
                template, reason = tpl, "ok"
        except OutputError as exc:
            reason = exc.reason
        # An invalid row's id hashes "None", as the bank's ids always have.
        template_id = stable_id(qid, str(template.text if template else None))
        rows.append(
            bank_row(
                template_id, qid, query, template, description, reason, text, student_name, PROMPT_VERSION
            )
        )
    df = pd.DataFrame(rows)
    valid = df[df["valid"]]
    return StageResult(
        df,
        {
            **_bank_stats(df),
            **backend_stats(student),
            "sample": Sample(valid, ["query", "template", "compatible_document_description"]),
        },
    )


def released_template_bank(settings: TemplateBankSettings) -> StageResult[pd.DataFrame]:
    """The template bank imported from a local copy of the released FineTemplates bank
    (`settings.released_bank_path`, at most `released_bank_limit` rows): the same columns as `template_bank`,
    each template validated by the same `<fi>` grammar, invalid rows kept with their reason."""
    table: dict[str, list] = {}
    files, layouts = set(), set()
    for chunk in iter_bank_chunks(settings.released_bank_path, settings.released_bank_limit):
        model = f"finetemplates/{chunk.path.name}"
        append_released_rows(table, chunk.rows, chunk.columns, model, settings.released_question_form)
        files.add(chunk.path)
        layouts.add(tuple(sorted(chunk.columns.items())))
    df = bank_frame(table)
    valid = df[df["valid"]]
    return StageResult(
        df,
        {
            "source": settings.released_bank_path,
            "files": len(files),
            # field -> the file's column; shards of one release share one layout, so this is usually one line.
            "columns_used": {str(i): dict(layout) for i, layout in enumerate(sorted(layouts))},
            **_bank_stats(df),
            "sample": Sample(valid, ["query", "template", "compatible_document_description"]),
        },
    )


def valid_templates(query_templates: pd.DataFrame) -> pd.DataFrame:
    """The bank as retrieval and generation use it: valid templates, one row per distinct template text."""
    if query_templates.empty:
        return query_templates
    valid = query_templates[query_templates["valid"]]
    return valid.drop_duplicates("template").reset_index(drop=True)
