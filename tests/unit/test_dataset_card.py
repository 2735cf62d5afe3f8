import pytest
import yaml

from fi_resources.logic.dataset_card import COLUMN_DOCS, dataset_card

STATS = {
    "rows": 3, "documents": 2, "document_tokens": 400, "corpus_tokens": 300, "unused_budget_tokens": 100,
    "judge": "likelihood-judge/v2", "keep_score": 4, "models": {"lm": "SmolLM2-135M-Instruct"},
    "data_version_inputs": {"training_corpus": "abc123"},
}  # fmt: skip


def test_card_has_a_yaml_header_and_documents_every_column():
    cols = ["pair_id", "text", "doc_id", "excerpt_spans", "judge_score"]
    card = dataset_card(STATS, cols, ["Instruction: a?\n\nAnswer: b."])
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] == "cc-by-sa-4.0" and header["size_categories"] == ["n<1K"]
    assert header["configs"][0]["data_files"][0]["path"] == "data/train.parquet"
    for c in cols:
        assert f"`{c}`" in card
    assert "75.0%" in card and "abc123" in card and "JOIN documents" in card


def test_card_refuses_missing_stats_and_undocumented_columns():
    with pytest.raises(ValueError, match="missing stats"):
        dataset_card({"rows": 1}, ["pair_id"], [])
    with pytest.raises(ValueError, match="without documentation"):
        dataset_card(STATS, ["pair_id", "mystery"], [])
    assert "doc_id" in COLUMN_DOCS


def test_lineage_sql_lands_on_the_source_text(tmp_path):
    import json
    import re

    import duckdb
    import pandas as pd

    source = "Lead paragraph of the article.\n\nThe second passage says the harbour opened in 1850."
    offset = source.index("The second")
    start = source.index("the harbour")
    spans = [[start, start + len("the harbour opened in 1850")]]
    (tmp_path / "data").mkdir()
    corpus = pd.DataFrame(
        {"pair_id": ["p1"], "judge_score": [5], "doc_id": ["s1-001"], "template_id": ["t1"],
         "query_id": ["q1"], "excerpt_spans": [json.dumps(spans)]}
    )  # fmt: skip
    corpus.to_parquet(tmp_path / "data/train.parquet")
    con = duckdb.connect()
    documents = pd.DataFrame(
        {"doc_id": ["s1-001"], "source_doc_id": ["s1"], "passage": [1], "offset": [offset],
         "title": ["Harbour"], "text": [source[offset:]]}
    )  # fmt: skip
    con.register("documents", documents)
    con.register("query_templates", pd.DataFrame({"template_id": ["t1"], "template": ["When did X open?"]}))
    con.register("user_queries", pd.DataFrame({"query_id": ["q1"], "query": ["When did it open?"]}))
    con.register("judged_pairs", pd.DataFrame({"pair_id": ["p1"], "raw_output": ["..."]}))
    card = dataset_card(STATS, ["pair_id", "doc_id", "excerpt_spans"], [])
    sql = re.search(r"```sql\n(.*?)```", card, re.S).group(1)
    row = con.execute(sql.replace("data/train.parquet", str(tmp_path / "data/train.parquet"))).df().iloc[0]
    assert row["first_excerpt"] == source[spans[0][0] : spans[0][1]] == "the harbour opened in 1850"
