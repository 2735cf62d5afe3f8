"""Importing a local copy of a template bank in the released FineTemplates layout as `query_templates`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fi_resources.backends import BackendStats
from fi_resources.inbox import InputFileError
from fi_resources.logic import released
from fi_resources.logic.released import BANK_COLUMNS, released_bank_frame, resolve_columns
from fi_resources.released import bank_files, iter_bank_chunks
from fi_resources.settings import TemplateBankSettings
from fi_resources.sources import stable_id
from fi_resources.stages.templates import collect_user_queries, released_template_bank, template_bank

# Rows as the released bank holds them: a template with <fi> slots, the compatible document description and
# the real query it came from. The fourth has unbalanced tags, the fifth no description.
ROWS = [
    {
        "template_id": "ft-000001",
        "query": "What is the capital of France?",
        "template": "What is the capital of <fi>a country</fi>?",
        "compatible_document_description": "A document about a country's geography or government.",
    },
    {
        "template_id": "ft-000002",
        "query": "How do I cook rice in a pressure cooker?",
        "template": "How do I cook <fi>a dish</fi> in <fi>a kitchen appliance</fi>?",
        "compatible_document_description": "A recipe or cooking guide for a dish and an appliance.",
    },
    {
        "template_id": "ft-000003",
        "query": "When did the Berlin Wall fall?",
        "template": "When did <fi>a historical event</fi> happen?",
        "compatible_document_description": "A history text that dates an event.",
    },
    {
        "template_id": "ft-000004",
        "query": "Who painted the Mona Lisa?",
        "template": "Who painted <fi>a painting</fi>?</fi>",
        "compatible_document_description": "An article about a painting and its painter.",
    },
    {
        "template_id": "ft-000005",
        "query": "Which river flows through Cairo?",
        "template": "Which river flows through <fi>a city</fi>?",
        "compatible_document_description": "",
    },
]


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 2) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf8")
    return path


class Student:
    """A genericizer answering every prompt with one fixed JSON output."""

    def __init__(self, output: str):
        self.output, self.stats, self.model_id = output, BackendStats(), "scripted"

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None, **_):
        self.stats.prompts += len(prompts)
        return [self.output for _ in prompts]


def test_parquet_bank_is_read_a_row_group_at_a_time(tmp_path):
    path = write_parquet(tmp_path / "bank.parquet", ROWS, row_group_size=2)
    chunks = list(iter_bank_chunks(path))
    assert [len(c.rows) for c in chunks] == [2, 2, 1]
    assert chunks[0].columns["template"] == "template"
    assert [r["template_id"] for c in chunks for r in c.rows] == [r["template_id"] for r in ROWS]
    # The limit cuts inside a row group and stops reading.
    assert sum(len(c.rows) for c in iter_bank_chunks(path, limit=3)) == 3


def test_imported_bank_has_the_genericizer_banks_columns_and_dtypes(tmp_path):
    path = write_parquet(tmp_path / "bank.parquet", ROWS)
    imported = released_template_bank(TemplateBankSettings(released_bank_path=str(path)))
    queries = collect_user_queries(
        [pd.DataFrame({"query": [ROWS[0]["query"]], "source": "chatterbot"})]
    ).value
    output = json.dumps(
        {
            "template": ROWS[0]["template"],
            "compatible_document_description": ROWS[0]["compatible_document_description"],
        }
    )
    generated = template_bank(queries, Student(output), "genericizer@x", TemplateBankSettings()).value
    assert list(imported.value.columns) == list(generated.columns) == list(BANK_COLUMNS)
    assert imported.value.dtypes.to_dict() == generated.dtypes.to_dict()


def test_mapping_validates_each_template_and_keeps_the_invalid_ones(tmp_path):
    path = write_parquet(tmp_path / "bank.parquet", ROWS)
    result = released_template_bank(TemplateBankSettings(released_bank_path=str(path)))
    df = result.value.set_index("template_id")
    assert len(df) == len(ROWS)
    assert df["valid"].tolist() == [True, True, True, False, False]
    assert df.loc["ft-000002", "n_slots"] == 2
    assert df.loc["ft-000001", "reason"] == "ok"
    assert df.loc["ft-000004", "reason"] == "unbalanced_tags"
    assert pd.isna(df.loc["ft-000004", "template"])
    assert df.loc["ft-000004", "raw_output"] == ROWS[3]["template"]
    assert df.loc["ft-000005", "reason"] == "missing_description"
    assert pd.isna(df.loc["ft-000005", "compatible_document_description"])
    assert set(df["model"]) == {"finetemplates/bank.parquet"}
    assert set(df["prompt_version"]) == {"released"}
    stats = result.stats
    assert (stats["rows"], stats["valid_templates"], stats["files"]) == (5, 3, 1)
    assert stats["source"] == str(path)
    assert dict(stats["outcomes"].counts) == {"ok": 3, "unbalanced_tags": 1, "missing_description": 1}


def test_query_ids_are_the_ids_user_queries_gives_the_same_text():
    assert released.stable_id("What is the capital of France?") == stable_id("What is the capital of France?")
    queries = collect_user_queries([pd.DataFrame({"query": [ROWS[0]["query"]], "source": "x"})]).value
    df = released_bank_frame(ROWS[:1], resolve_columns(list(ROWS[0]), "rows"), "m")
    assert df.loc[0, "query_id"] == queries.loc[0, "query_id"]


def test_genericity_is_checked_against_the_source_query():
    # The slot copied the query's entity verbatim: the template genericized nothing.
    row = {
        "query": "What is the capital of the Republic of Austria?",
        "template": "What is the capital of <fi>the Republic of Austria</fi>?",
        "compatible_document_description": "A document about Austria.",
    }
    df = released_bank_frame([row], resolve_columns(list(row), "rows"), "m")
    assert (df.loc[0, "valid"], df.loc[0, "reason"]) == (False, "not_generic")


def test_question_form_is_required_unless_switched_off():
    row = {
        "template": "Good morning, <fi>a person</fi>!",
        "compatible_document_description": "Any greeting.",
    }
    cols = resolve_columns(list(row), "rows")
    assert released_bank_frame([row], cols, "m").loc[0, "reason"] == "not_a_question"
    assert released_bank_frame([row], cols, "m", require_question_form=False).loc[0, "valid"]


def test_column_name_variants_and_missing_optional_columns():
    row = {
        "ID": 17,
        "Instruction_Template": "Who wrote <fi>a novel</fi>?",
        "document_description": "A review or summary of a novel naming its author.",
        "source_query_id": "q-9",
    }
    cols = resolve_columns(list(row), "rows")
    assert cols == {
        "template": "Instruction_Template",
        "compatible_document_description": "document_description",
        "template_id": "ID",
        "query_id": "source_query_id",
    }
    out = released_bank_frame([row], cols, "m").iloc[0]
    assert (out["template_id"], out["query_id"], out["query"], out["valid"]) == ("17", "q-9", "", True)


def test_cells_that_hold_no_text_are_refused_not_crashed():
    rows = [
        {"template": None, "compatible_document_description": "d"},
        {"template": 42, "compatible_document_description": "d"},
        {"template": "What is <fi>a thing</fi>?", "compatible_document_description": float("nan")},
    ]
    df = released_bank_frame(rows, resolve_columns(["template", "compatible_document_description"], "r"), "m")
    assert df["reason"].tolist() == ["missing_template", "missing_template", "missing_description"]
    assert not df["valid"].any()
    assert df["template_id"].str.len().eq(12).all()


def test_a_missing_required_column_names_the_file_and_the_columns_found(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "compatible_document_description"} for r in ROWS]
    path = write_parquet(tmp_path / "no_description.parquet", rows)
    with pytest.raises(ValueError, match="compatible_document_description") as err:
        list(iter_bank_chunks(path))
    assert str(path) in str(err.value)
    assert "['template_id', 'query', 'template']" in str(err.value)
    jsonl = write_jsonl(tmp_path / "no_template.jsonl", [json.dumps({"query": "q", "text": "t"})])
    with pytest.raises(ValueError, match=r"no_template\.jsonl.*'template'.*found \['query', 'text'\]"):
        list(iter_bank_chunks(jsonl))


def test_jsonl_bank_is_read_line_by_line_and_a_malformed_line_is_named(tmp_path):
    lines = [json.dumps(r) for r in ROWS[:2]] + ["", json.dumps(ROWS[2])]
    good = write_jsonl(tmp_path / "bank.jsonl", lines)
    result = released_template_bank(TemplateBankSettings(released_bank_path=str(good)))
    assert result.value["template_id"].tolist() == ["ft-000001", "ft-000002", "ft-000003"]
    assert result.value["valid"].all()
    limited = released_template_bank(
        TemplateBankSettings(released_bank_path=str(good), released_bank_limit=1)
    )
    assert len(limited.value) == 1

    bad = write_jsonl(
        tmp_path / "bad.jsonl", [json.dumps(ROWS[0]), '{"template": "What is <fi>a', json.dumps(ROWS[1])]
    )
    with pytest.raises(InputFileError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        released_template_bank(TemplateBankSettings(released_bank_path=str(bad)))
    array = write_jsonl(tmp_path / "array.jsonl", [json.dumps(ROWS[0]), "[1, 2]"])
    with pytest.raises(InputFileError, match=r"array\.jsonl: line 2 is not a JSON object"):
        list(iter_bank_chunks(array))


def test_a_folder_of_shards_is_read_in_name_order(tmp_path):
    data = tmp_path / "finetemplates" / "data"
    data.mkdir(parents=True)
    write_parquet(data / "train-00001-of-00002.parquet", ROWS[2:])
    write_parquet(data / "train-00000-of-00002.parquet", ROWS[:2])
    (data / "README.md").write_text("not a shard")
    assert [p.name for p in bank_files(tmp_path / "finetemplates")] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    result = released_template_bank(TemplateBankSettings(released_bank_path=str(tmp_path / "finetemplates")))
    assert result.value["template_id"].tolist() == [r["template_id"] for r in ROWS]
    assert result.stats["files"] == 2
    with pytest.raises(InputFileError, match="no such file or folder"):
        bank_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="holds no"):
        bank_files(tmp_path / "empty")
    (tmp_path / "bank.csv").write_text("template\n")
    with pytest.raises(InputFileError, match="unsupported file type"):
        bank_files(tmp_path / "bank.csv")


def test_not_parquet_is_named(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputFileError, match=r"broken\.parquet: cannot be read as Parquet"):
        list(iter_bank_chunks(path))


def test_unset_import_settings_leave_the_fingerprint_as_before():
    unset = TemplateBankSettings().fingerprint()
    assert not any(k.startswith("released") for k in unset)
    assert TemplateBankSettings(released_bank_limit=5).fingerprint() == unset
    set_ = TemplateBankSettings(released_bank_path="/data/finetemplates").fingerprint()
    assert set_["released_bank_path"] == "/data/finetemplates" and set_ != unset


def test_the_asset_reads_the_released_bank_when_the_path_is_set(tmp_path):
    import dagster as dg

    from fi_assets.templates import query_templates
    from fi_resources.resources import TemplateBankSettingsResource
    from fi_resources.warehouse import Artifact

    path = write_jsonl(tmp_path / "bank.jsonl", [json.dumps(r) for r in ROWS])
    out = query_templates(
        context=dg.build_asset_context(),
        user_queries=pd.DataFrame(columns=["query_id", "query", "source"]),
        # Neither the queries nor the genericizer (nor the models) are touched on this path.
        genericizer=Artifact("/nowhere", data_version="x"),
        models=None,
        template_bank_settings=TemplateBankSettingsResource(released_bank_path=str(path)),
    )
    assert out.value["template_id"].tolist() == [r["template_id"] for r in ROWS]
    meta = {k: getattr(v, "value", v) for k, v in out.metadata.items()}
    assert (meta["source"], meta["rows"], meta["valid_templates"]) == (str(path), 5, 3)
    assert "unbalanced_tags" in str(meta["outcomes"])
    assert query_templates.code_versions_by_key[dg.AssetKey("query_templates")] == "5"
