"""The dataset card (README.md with a Hugging Face YAML header) of the exported training corpus."""

from __future__ import annotations

from collections.abc import Mapping

COLUMN_DOCS: dict[str, str] = {
    "pair_id": "id of the pair; equals `match_id` in `document_matches` and `pair_id` in `instantiated_pairs`/`judged_pairs`",
    "position": "order in the corpus (the token-for-token selection order)",
    "text": "the training example: `Instruction: {instruction}\\n\\nAnswer: {answer}` (standalone, no document)",
    "instruction": "the instantiated instruction",
    "answer": "the answer, excerpt markers expanded from the source document",
    "tokens": "tokens of `text` plus one EOS under the base LM tokenizer (what the budget counts)",
    "doc_id": "the passage the pair was made from (`documents.doc_id`; a document longer than one passage is split)",
    "source_doc_id": "the source document the passage is part of (`documents.source_doc_id`)",
    "doc_tokens": "tokens of the passage plus one EOS (its own budget before rollover)",
    "shard": "document shard = the Dagster partition the pair was made in",
    "template_id": "instruction template (`query_templates.template_id`)",
    "query_id": "the real user query the template was genericized from (`user_queries`)",
    "excerpt_spans": "JSON list of [start, end) character spans of the answer's excerpts in the source document's text",
    "grounding_ratio": "share of the answer's non-space characters copied from the document (kept ≥ 0.80)",
    "model": "instantiator that wrote the pair, with its artifact data version",
    "prompt_version": "version of the instantiator prompt",
    "judge": "judge name and version",
    "judge_score": "judge's 1–5 Likert score (only pairs ≥ 4 are in the corpus)",
    "judge_value": "the judge's continuous score behind judge_score (for ranking)",
}


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "n>1M"


def dataset_card(stats: Mapping[str, object], columns: list[str], sample: list[str]) -> str:
    """README.md for the export. `stats` needs rows, documents, document_tokens, corpus_tokens,
    unused_budget_tokens, judge, keep_score, models (a mapping), data_version_inputs (a mapping)."""
    missing = {"rows", "documents", "document_tokens", "corpus_tokens", "unused_budget_tokens", "judge",
               "keep_score", "models"} - set(stats)  # fmt: skip
    if missing:
        raise ValueError(f"dataset_card: missing stats {sorted(missing)}")
    rows = int(stats["rows"])  # type: ignore[arg-type]
    doc_tokens = int(stats["document_tokens"])  # type: ignore[arg-type]
    corpus_tokens = int(stats["corpus_tokens"])  # type: ignore[arg-type]
    used = corpus_tokens / doc_tokens if doc_tokens else 0.0
    undocumented = [c for c in columns if c not in COLUMN_DOCS]
    if undocumented:
        raise ValueError(f"dataset_card: columns without documentation {undocumented}")
    header = "\n".join(
        [
            "---",
            "language:\n- en",
            "license: cc-by-sa-4.0",
            "task_categories:\n- text-generation",
            f"size_categories:\n- {_size_category(rows)}",
            "tags:\n- synthetic\n- fineinstructions\n- instruction-pretraining",
            "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train.parquet",
            "---",
        ]
    )
    models = "\n".join(f"| {k} | {v} |" for k, v in dict(stats["models"]).items())  # type: ignore[call-overload]
    cols = "\n".join(f"| `{c}` | {COLUMN_DOCS[c]} |" for c in columns)
    inputs = stats.get("data_version_inputs") or {}
    lineage = "\n".join(f"| {k} | {v} |" for k, v in dict(inputs).items())  # type: ignore[call-overload]
    examples = "\n\n".join(f"```text\n{s}\n```" for s in sample)
    return f"""{header}

# FineInstructions training corpus (this warehouse's export)

Synthetic instruction/answer pairs made from real documents by the FineInstructions method (Patel,
Raffel, Callison-Burch 2026): real user queries → `<fi>` templates → templates retrieved per document →
instantiated with answers copied from the document (`<excerpt>` tags) → judged → selected under a
token-for-token budget. Each row is one standalone training example.

## Size and budget

| | |
|---|---:|
| pairs (rows) | {rows} |
| documents = passages (their tokens are the budget) | {stats["documents"]} |
| source documents they are passages of | {stats.get("source_documents", "n/a")} |
| passages with at least one pair | {stats.get("documents_with_pairs", "n/a")} |
| passage tokens (the budget) | {doc_tokens} |
| corpus tokens (pairs, formatting and EOS included) | {corpus_tokens} |
| budget used | {used:.1%} |
| unused budget at the end (rollover left) | {stats["unused_budget_tokens"]} |

Token-for-token rule (paper §5): documents are taken in order (shard, doc_id); each has a budget of its own
tokens plus what earlier documents left unused; its judged pairs are added in a seeded random order until
the next would exceed the budget. Over every prefix of the documents, pair tokens ≤ document tokens.

## Judge

`{stats["judge"]}`, 5-point rubric (1 = off-topic … 5 = fully answers with no extraneous, vague or
repetitive content); only pairs scoring ≥ {stats["keep_score"]} are candidates. The embedded judge's
validation (correct vs corrupted pairs) is the warehouse table `judge_validation`.

## Models

| role | model |
|---|---|
{models}

## Columns

| column | meaning |
|---|---|
{cols}

## Lineage: joining back to the warehouse

The warehouse is DuckDB (`warehouse.duckdb`, one view per asset). With this folder's Parquet file:

```sql
SELECT c.pair_id, c.judge_score, d.title, d.passage, t.template, q.query, j.raw_output,
       -- the first copied span: excerpt_spans are source-text offsets, the passage starts at d.offset
       substr(d.text, json_extract(c.excerpt_spans, '$[0][0]')::INT - d.offset + 1,
              json_extract(c.excerpt_spans, '$[0][1]')::INT - json_extract(c.excerpt_spans, '$[0][0]')::INT)
         AS first_excerpt
FROM read_parquet('data/train.parquet') c
JOIN documents d USING (doc_id)
JOIN query_templates t USING (template_id)
JOIN user_queries q ON q.query_id = c.query_id
JOIN judged_pairs j USING (pair_id);
```

`documents` holds one row per passage: `doc_id` is the passage, `source_doc_id` its source document
(one row of the shard file), and the passage is `source[offset:offset + len(text)]`. `excerpt_spans` index
into the source document's text: `source[start:end]` is each copied span, i.e.
`text[start - offset:end - offset]` of the passage row (`passage_spans` in `instantiated_pairs` holds
those passage-local spans).

Input data versions of this export:

| asset | data version |
|---|---|
{lineage}

## Files

- `data/train.parquet`, `data/train.jsonl`: the rows above.
- `hf/`: the same rows as a Hugging Face `datasets` folder (`datasets.load_from_disk("hf")`).

## Examples

{examples}

## License

Documents are Wikipedia text (CC BY-SA 4.0) unless your own shards say otherwise; the queries come from
chatterbot-corpus (BSD-3) and your own query files.
"""
