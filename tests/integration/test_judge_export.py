"""The judge check set + validation and the corpus export, on the tiny profile (random models: plumbing,
not quality; the embedded judge's quality is measured by the `judge_validation` asset on the demo)."""

import json

import dagster as dg
import datasets
import pandas as pd
import pytest

from fi_assets.checks import export_reloads, judge_beats_corruptions
from fi_assets.corpus import corpus_export
from fi_assets.judging import judge_check_set, judge_validation
from fi_resources.export import export_corpus
from fi_resources.logic.judge_check import CORRUPTIONS
from fi_resources.resources import JudgeSettingsResource, ModelsResource, WarehouseResource
from fi_resources.stages.corpus import CORPUS_COLUMNS
from fi_resources.warehouse import Artifact

DOCS = pd.DataFrame(
    {
        "doc_id": ["d1", "d2"],
        "shard": ["s0", "s0"],
        "source_doc_id": ["d1", "d2"],
        "passage": [0, 0],
        "offset": [0, 0],
        "title": ["Albedo", "Algeria"],
        "text": [
            "Albedo is the measure of the diffuse reflection of solar radiation. It is measured on a scale "
            "from zero to one. Snow has a high albedo because it reflects most sunlight.",
            "Algeria is a country in North Africa on the Mediterranean coast. Its capital is Algiers, which "
            "lies in the far north. The Sahara desert covers more than four fifths of the country.",
        ],
    }
)
SILVER = pd.DataFrame(
    {
        "doc_id": ["d1", "d2", "d2"],
        "template_id": ["t1", "t2", "t3"],
        "target": [
            "Instruction: What does albedo measure?\nAnswer: <excerpt>Albedo is the<...>solar radiation.</excerpt>",
            "Instruction: Where is Algeria?\nAnswer: <excerpt>Algeria is a<...>Mediterranean coast.</excerpt>",
            None,
        ],
        "reason": ["ok", "ok", "no_filler"],
    }
)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    # Random tiny models are built into a private cache: never into a shared read-only one.
    monkeypatch.setenv("FI_MODEL_CACHE", str(tmp_path / "models"))
    return ModelsResource(profile="tiny", warehouse=WarehouseResource(home=str(tmp_path / "fi")))


def test_check_set_and_validation_run_and_report(tiny):
    settings = JudgeSettingsResource(judge_check_pairs=2)
    out = judge_check_set(silver_instantiations=SILVER, documents=DOCS, judge_settings=settings)
    twins = out.value
    assert set(twins["corruption"]) == set(CORRUPTIONS)
    assert set(twins["source"]) == {"silver", "chatterbot"} and set(twins["split"]) == {"dev", "test"}
    assert (twins["corrupted_answer"] != twins["answer"]).sum() >= len(twins) - 2 * twins["base_id"].nunique()
    val = judge_validation(
        context=dg.build_asset_context(), judge_check_set=twins, models=tiny, judge_settings=settings
    )
    df = val.value
    assert len(df) == len(twins) and df["correct_value"].notna().all()
    assert df["correct_score"].between(1, 5).all() and df["corrupted_score"].between(1, 5).all()
    assert 0.0 <= val.metadata["test_win_rate"].value <= 1.0
    check = judge_beats_corruptions(judge_validation=df, judge_settings=settings)
    rate = df[df["split"] == "test"]["correct_wins"].mean()
    assert check.passed == (rate >= 0.8)


def _corpus() -> pd.DataFrame:
    rows = []
    for k in range(3):
        instr, ans = f"What is item {k}?", f"Item {k} is a thing, with “quotes” and é."
        rows.append(
            {"pair_id": f"p{k}", "position": k, "text": f"Instruction: {instr}\n\nAnswer: {ans}",
             "instruction": instr, "answer": ans, "tokens": 20 + k, "doc_id": "d1" if k < 2 else "d2",
             "source_doc_id": "d1" if k < 2 else "d2", "doc_tokens": 60, "shard": "s0", "template_id": f"t{k}", "query_id": f"q{k}",
             "excerpt_spans": json.dumps([[0, 10 + k]]), "grounding_ratio": 0.9, "model": "instantiator@abc",
             "prompt_version": "v1", "judge": "likelihood-judge/v2", "judge_score": 4 + (k == 0),
             "judge_value": 3.6 + k / 10}
        )  # fmt: skip
    df = pd.DataFrame(rows, columns=CORPUS_COLUMNS)
    df["judge_score"] = df["judge_score"].astype("Int64")
    return df


def test_export_reloads_with_datasets_and_pandas(tmp_path):
    corpus = _corpus()
    stats = {"rows": 3, "documents": 2, "document_tokens": 120, "corpus_tokens": 63, "unused_budget_tokens": 57,
             "judge": "likelihood-judge/v2", "keep_score": 4, "models": {"lm": "tiny"}}  # fmt: skip
    export_corpus(corpus, tmp_path, stats)
    hf = datasets.load_from_disk(str(tmp_path / "hf"))
    pq = pd.read_parquet(tmp_path / "data/train.parquet")
    jl = pd.read_json(tmp_path / "data/train.jsonl", lines=True, dtype=False)
    for df in (hf.to_pandas(), pq, jl):
        assert list(df.columns) == CORPUS_COLUMNS
        assert df["pair_id"].tolist() == ["p0", "p1", "p2"]
        assert df["text"].tolist() == corpus["text"].tolist()
        assert [int(x) for x in df["judge_score"]] == [5, 4, 4]
        assert json.loads(df["excerpt_spans"].iloc[2]) == [[0, 12]]
    assert hf.num_rows == 3
    card = (tmp_path / "README.md").read_text(encoding="utf8")
    assert card.startswith("---\n") and "52.5%" in card
    assert export_reloads(corpus_export=Artifact(str(tmp_path)), training_corpus=corpus).passed
    pq.drop(index=1).to_parquet(tmp_path / "data/train.parquet")  # a lost row must be noticed
    assert not export_reloads(corpus_export=Artifact(str(tmp_path)), training_corpus=corpus).passed
    with pytest.raises(ValueError):
        export_corpus(corpus.iloc[:0], tmp_path / "empty", stats)


def test_corpus_export_asset_writes_an_artifact(tiny, tmp_path):
    out = corpus_export(
        context=dg.build_asset_context(),
        training_corpus=_corpus(),
        documents=DOCS,
        models=tiny,
        judge_settings=JudgeSettingsResource(),
        warehouse=WarehouseResource(home=str(tmp_path / "fi")),
    )
    folder = out.value.path
    assert datasets.load_from_disk(f"{folder}/hf").num_rows == 3
    assert out.metadata["rows"].value == 3 and out.metadata["document_tokens"].value > 0
    assert "not recorded" in (tmp_path / "fi").joinpath(folder, "README.md").read_text()
