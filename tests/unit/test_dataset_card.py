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
