"""Rows of a template bank in the released FineTemplates layout (`fineinstructions/finetemplates` on Hugging
Face, a user's local Parquet/JSONL copy) as rows of this project's `query_templates` table.

What the released layout is, and how sure we are of it, is in the README ("A released template bank"): the
`template` (with ``<fi>…</fi>`` slots) and `compatible_document_description` fields are the released
templatizer's output keys; the other column names are accepted in the variants below because no source we
could read fixes them. Every template goes through this project's own ``<fi>`` grammar
(`logic.templates.validate_template`), so an imported bank holds nothing the genericizer's bank would refuse;
a refused row is kept with ``valid=False`` and its reason, never dropped and never a crash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from fi_resources.logic.templates import Template, question_form_reason, validate_template

# The columns and order of `query_templates` (as `bank_row` writes them).
BANK_COLUMNS = (
    "template_id", "query_id", "query", "template", "compatible_document_description", "n_slots", "valid",
    "reason", "raw_output", "model", "prompt_version",
)  # fmt: skip
# `prompt_version` of an imported row: no prompt of ours produced it.
RELEASED_PROMPT_VERSION = "released"

# Accepted names per field, first match wins (case-insensitive). The first two fields are required.
COLUMN_VARIANTS: dict[str, tuple[str, ...]] = {
    "template": ("template", "instruction_template"),
    "compatible_document_description": (
        "compatible_document_description", "document_description", "compatible_description",
    ),
    "query": ("query", "source_query", "real_query", "original_query", "user_query"),
    "template_id": ("template_id", "id"),
    "query_id": ("query_id", "source_query_id"),
}  # fmt: skip
REQUIRED_FIELDS = ("template", "compatible_document_description")


def bank_row(
    template_id: str,
    query_id: str,
    query: str,
    template: Template | None,
    description: str | None,
    reason: str,
    raw_output: str,
    model: str,
    prompt_version: str,
) -> dict[str, object]:
    """One `query_templates` row (the keys of `BANK_COLUMNS`, in order), for the genericizer's bank and an
    imported one alike. `template` is None for an invalid row, which keeps its reason and raw output but no
    description (nothing may retrieve it)."""
    return {
        "template_id": template_id,
        "query_id": query_id,
        "query": query,
        "template": template.text if template else None,
        "compatible_document_description": description if template else None,
        "n_slots": template.n_slots if template else 0,
        "valid": template is not None,
        "reason": reason,
        "raw_output": raw_output,
        "model": model,
        "prompt_version": prompt_version,
    }


def resolve_columns(columns: Sequence[str], source: str) -> dict[str, str]:
    """Map each field of `COLUMN_VARIANTS` to the column of `columns` that holds it (optional fields only
    when present). Raises `ValueError` naming `source` and the columns found when a required one is missing."""
    by_fold = {}
    for name in columns:
        by_fold.setdefault(str(name).casefold(), str(name))
    out: dict[str, str] = {}
    for field, variants in COLUMN_VARIANTS.items():
        found = next((by_fold[v] for v in variants if v in by_fold), None)
        if found is not None:
            out[field] = found
        elif field in REQUIRED_FIELDS:
            raise ValueError(
                f"{source}: not a template bank in the released finetemplates layout: needs a {field!r} "
                f"column (one of {list(variants)}); found {list(columns)}"
            )
    return out


def stable_id(*parts: str, n: int = 12) -> str:
    """`fi_resources.sources.stable_id`, repeated so this module stays free of the input layer: a query's id
    here is the id `user_queries` gives the same text (a test holds the two equal)."""
    return hashlib.sha1("\x1f".join(parts).encode("utf8", "surrogatepass")).hexdigest()[:n]


def _text(value: object) -> str | None:
    """A cell as stripped text; None when it holds no text (missing, NaN, a number, a list)."""
    return value.strip() if isinstance(value, str) else None


def released_bank_row(
    row: Mapping[str, object], columns: Mapping[str, str], model: str, require_question_form: bool = True
) -> dict[str, object]:
    """One `query_templates` row from one released row (`columns` from `resolve_columns`). Invalid rows keep
    their reason: `missing_template`, a grammar or genericity reason of `validate_template` (checked against
    the source query when the file has one), a `question_form_reason` when `require_question_form`, or
    `missing_description` (retrieval embeds the description, so a template without one cannot be matched)."""

    def cell(field: str) -> object:
        return row.get(columns[field]) if field in columns else None

    raw = cell("template")
    raw_text = raw if isinstance(raw, str) else ""
    query = _text(cell("query")) or ""
    description = _text(cell("compatible_document_description"))
    query_id = _text(cell("query_id")) or (stable_id(query) if query else "")
    template, reason = None, "ok"
    if not raw_text.strip():
        reason = "missing_template"
    else:
        tpl, why = validate_template(raw_text, query or None)
        if tpl is not None and require_question_form:
            # The same bar the genericizer's outputs meet (`stages.templates.template_bank`).
            why = question_form_reason(tpl)
            tpl = None if why else tpl
        if tpl is None:
            reason = why or "invalid_template"
        elif not description:
            reason = "missing_description"
        else:
            template = tpl
    given_id = cell("template_id")
    # An id as the file wrote it (ints too) keeps the row traceable to the release; else one like ours.
    template_id = str(given_id).strip() if given_id is not None and str(given_id).strip() else ""
    template_id = template_id or stable_id(query_id, raw_text)
    return bank_row(
        template_id, query_id, query, template, description, reason, raw_text, model, RELEASED_PROMPT_VERSION
    )


def append_released_rows(
    table: dict[str, list],
    rows: Iterable[Mapping[str, object]],
    columns: Mapping[str, str],
    model: str,
    require_question_form: bool = True,
) -> None:
    """Append `released_bank_row` of each row to `table` (column name -> values, see `bank_frame`)."""
    for row in rows:
        out = released_bank_row(row, columns, model, require_question_form)
        for name in BANK_COLUMNS:
            table.setdefault(name, []).append(out[name])


def bank_frame(table: Mapping[str, list]) -> pd.DataFrame:
    """The `query_templates` frame of the columns in `table`. Built once from whole columns (not by
    concatenating chunks) so pandas infers each text column's dtype as it does for the genericizer's bank."""
    df = pd.DataFrame({name: table.get(name, []) for name in BANK_COLUMNS}, columns=list(BANK_COLUMNS))
    return df.astype({"n_slots": "int64", "valid": "bool"})


def released_bank_frame(
    rows: Iterable[Mapping[str, object]],
    columns: Mapping[str, str],
    model: str,
    require_question_form: bool = True,
) -> pd.DataFrame:
    """`released_bank_row` over `rows` as a `query_templates` frame (also when empty)."""
    table: dict[str, list] = {}
    append_released_rows(table, rows, columns, model, require_question_form)
    return bank_frame(table)
