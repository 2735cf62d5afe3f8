"""Bad contents of a shard file: a clear error naming the file (and line), or a counted drop, and the
other shards unaffected (fi_resources.sources.read_document_shard, the documents asset)."""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fi_assets.documents import documents
from fi_resources.settings import DocumentSettings
from fi_resources.sources import DOCUMENT_COLUMNS, InputFileError, read_document_shard
from fi_resources.stages.documents import describe_documents, shard_documents
from fi_resources.warehouse import Warehouse, frame_version
from tests.faults.conftest import GOOD_TEXT, documents_resources, good_shard, write_jsonl

SETTINGS = DocumentSettings()


def read(path: Path, settings: DocumentSettings = SETTINGS) -> tuple[pd.DataFrame, dict[str, int]]:
    df, tally = read_document_shard(path, settings)
    return df, {k: v for k, v in tally.dropped.items() if v}


# ---- a clear error naming the file (and line) ---------------------------------------------------------
def test_malformed_jsonl_line_names_the_file_and_line(inbox, fault):
    path = inbox / "bad.jsonl"
    path.write_text(json.dumps({"text": GOOD_TEXT}) + "\n{not json\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(InputFileError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        read(path)
    fault("clear error")


def test_truncated_jsonl_says_the_file_may_be_cut_short(inbox, fault):
    path = inbox / "cut.jsonl"
    path.write_text(json.dumps({"text": GOOD_TEXT}) + "\n" + '{"title": "half", "text": "The harb')
    with pytest.raises(InputFileError, match=r"cut\.jsonl: line 2 is not valid JSON .*may be cut short"):
        read(path)
    fault("clear error")


def test_invalid_utf8_names_the_line_and_byte(inbox, fault):
    path = inbox / "latin1.jsonl"
    path.write_bytes(json.dumps({"text": GOOD_TEXT}).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(
        InputFileError, match=r"latin1\.jsonl: line 2 is not UTF-8 text \(byte 0xe9 at column 14\)"
    ):
        read(path)
    fault("clear error")


def test_invalid_utf8_csv_names_the_file(inbox, fault):
    path = inbox / "latin1.csv"
    path.write_bytes(b"title,text\nT,caf\xe9 au lait\n")
    with pytest.raises(InputFileError, match=r"latin1\.csv: is not UTF-8 text \(byte 0xe9\)"):
        read(path)
    fault("clear error")


@pytest.mark.parametrize(
    ("line", "what"), [("[1, 2]", "an array"), ('"just text"', "a string"), ("7", "a number")]
)
def test_a_jsonl_line_that_is_not_an_object_names_the_line(inbox, line, what, fault):
    path = inbox / "shapes.jsonl"
    path.write_text(json.dumps({"text": GOOD_TEXT}) + "\n" + line + "\n")
    with pytest.raises(InputFileError, match=rf"shapes\.jsonl: line 2 is {what}, not a JSON object"):
        read(path)
    fault("clear error")


def test_missing_text_column_lists_the_columns_found(inbox, fault):
    path = write_jsonl(inbox / "cols.jsonl", [{"title": "T", "body_text": GOOD_TEXT}])
    with pytest.raises(
        InputFileError,
        match=r"cols\.jsonl: line 1 \(the first row\) needs one of the columns .*found \['title', 'body_text'\]",
    ):
        read(path)
    fault("clear error")


def test_ragged_csv_names_the_file_and_line(inbox, fault):
    path = inbox / "ragged.csv"
    path.write_text(f"title,text\nA,{GOOD_TEXT}\nB,two,extra\n")
    with pytest.raises(InputFileError, match=r"ragged\.csv: cannot be read .*line 3"):
        read(path)
    fault("clear error")


@pytest.mark.parametrize("content", [b"", b"PAR1 not really a parquet file", b"\x00" * 64])
def test_zero_byte_or_corrupt_parquet_names_the_file(inbox, content, fault):
    path = inbox / "broken.parquet"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=r"broken\.parquet: cannot be read"):
        read(path)
    fault("clear error")


# ---- counted drops -----------------------------------------------------------------------------------
def test_null_and_blank_text_are_counted_as_empty(inbox, fault):
    rows = [{"title": "N", "text": None}, {"title": "B", "text": "  \n "}, {"title": "G", "text": GOOD_TEXT}]
    df, dropped = read(write_jsonl(inbox / "nulls.jsonl", rows))
    assert dropped == {"empty": 2} and df["title"].tolist() == ["G"]
    fault("counted drop", rows_in=len(rows), kept=df["source_doc_id"], dropped=sum(dropped.values()))


def test_list_dict_number_and_boolean_text_is_refused_not_stored_as_repr(inbox, fault):
    rows = [
        {"title": "L", "text": ["The harbour", "town"] * 60},
        {"title": "D", "text": {"body": GOOD_TEXT}},
        {"title": "N", "text": 1234567},
        {"title": "F", "text": 3.5},
        {"title": "T", "text": True},
        {"title": "G", "text": GOOD_TEXT},
    ]
    df, dropped = read(write_jsonl(inbox / "types.jsonl", rows))
    assert dropped == {"not_text": 5}
    assert df["title"].tolist() == ["G"] and not df["text"].str.startswith(("[", "{")).any()
    fault("counted drop", rows_in=len(rows), kept=df["source_doc_id"], dropped=sum(dropped.values()))


def test_list_text_in_parquet_is_refused(inbox, fault):
    path = inbox / "lists.parquet"
    pd.DataFrame({"title": ["L", "G"], "text": [["a " * 200], [GOOD_TEXT]]}).to_parquet(path)
    df, dropped = read(path)
    assert dropped == {"not_text": 2} and df.empty
    fault("counted drop", rows_in=2, kept=df["source_doc_id"], dropped=sum(dropped.values()))


def test_csv_numbers_stay_text_as_written(inbox, fault):
    path = inbox / "codes.csv"
    pd.DataFrame({"title": ["007"], "text": [GOOD_TEXT]}).to_csv(path, index=False)
    df, _ = read(path)
    assert df["title"].tolist() == ["007"]  # not 7, not 7.0
    fault("accepted", rows_in=1, kept=df["source_doc_id"])


def test_exact_duplicate_documents_are_dropped_and_counted(inbox, fault):
    texts = [GOOD_TEXT + f" Variant {k}." for k in range(4)]
    rows = [{"title": f"T{i}", "text": texts[i % 4]} for i in range(11)]  # 11 rows, 4 distinct texts
    df, dropped = read(write_jsonl(inbox / "dups.jsonl", rows))
    assert dropped == {"duplicate": 7}
    assert df["source_doc_id"].nunique() == 4 and df["title"].tolist() == ["T0", "T1", "T2", "T3"]
    fault("counted drop", rows_in=len(rows), kept=df["source_doc_id"], dropped=sum(dropped.values()))


def test_a_huge_title_is_cut_and_counted_before_any_model(inbox, fault):
    huge = "Harbour " * 61_000  # ~489 KB, as the hostile user's title
    rows = [{"title": huge, "text": GOOD_TEXT}, {"title": {"a": 1}, "text": GOOD_TEXT + " Other."}]
    result = shard_documents(write_jsonl(inbox / "titles.jsonl", rows), "titles", SETTINGS)
    titles = result.value["title"].tolist()
    assert len(titles[0]) == 300 and titles[1] == "titles #1"  # a dict title falls back, not its repr
    assert result.stats["titles_changed"].counts == {"cut": 1, "not_text": 1}
    fault("counted drop", rows_in=len(rows), kept=result.value["source_doc_id"])


def test_a_huge_document_is_cut_at_the_cap_counted_and_quick(inbox, fault):
    paragraph = " ".join(f"Sentence {i} about the harbour." for i in range(30))
    rows = [
        {"title": "Big", "text": "\n\n".join([paragraph] * 4000)},
        {"title": "Wall", "text": "x" * 3_000_000},
    ]
    path = write_jsonl(inbox / "huge.jsonl", rows)
    start = time.perf_counter()
    df, tally = read_document_shard(path, DocumentSettings(max_source_chars=1_000_000))
    assert time.perf_counter() - start < 10
    assert tally.cut_documents == 2 and (df["offset"] + df["text"].str.len()).max() <= 1_000_000
    assert df["text"].str.len().max() <= SETTINGS.passage_chars
    fault("counted drop", bound_s=10)


def test_lone_surrogates_are_counted_and_the_rest_is_storable(inbox, tmp_path, fault):
    path = inbox / "surrogate.jsonl"
    path.write_text('{"title": "S", "text": "bad \\ud800 text ' + "x " * 200 + '"}\n'
                    '{"title": "T\\udfff", "text": "' + GOOD_TEXT + '"}\n')  # fmt: skip
    df, dropped = read(path)
    assert dropped == {"invalid_unicode": 1} and df["title"].tolist() == ["surrogate #1"]
    Warehouse(tmp_path / "home").write_table("documents", "surrogate", df)  # on main: a raw pyarrow error
    fault("counted drop", rows_in=2, kept=df["source_doc_id"], dropped=sum(dropped.values()))


def test_a_bom_at_the_start_of_a_jsonl_file_is_accepted(inbox, fault):
    path = inbox / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"title": "B", "text": GOOD_TEXT}).encode() + b"\n")
    df, _ = read(path)
    assert df["title"].tolist() == ["B"]
    fault("accepted", rows_in=1, kept=df["source_doc_id"])


# ---- an empty shard is an empty partition downstream assets pass through -------------------------------
@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("header.csv", "title,text\n", "the file has no rows"),
        (
            "blank.jsonl",
            '{"text": "  "}\n{"text": "short"}\n',
            "all 2 documents were dropped (empty 1, too_short 1)",
        ),
    ],
)
def test_a_shard_with_no_surviving_document_is_an_empty_typed_partition(
    inbox, tmp_path, name, content, reason, fault
):
    (inbox / name).write_text(content)
    good_shard(inbox / "good.jsonl")
    resources = documents_resources(inbox, tmp_path / "home")
    warehouse = resources["warehouse"]
    instance = dg.DagsterInstance.ephemeral()
    key = Path(name).stem
    instance.add_dynamic_partitions("document_shards", [key, "good"])
    for shard in (key, "good"):
        result = dg.materialize([documents], partition_key=shard, instance=instance, resources=resources)
        assert result.success
    meta = result.asset_materializations_for_node("documents")[0].metadata  # "good"'s: no empty reason
    assert "empty_reason" not in meta
    empty = dg.materialize([documents], partition_key=key, instance=instance, resources=resources)
    assert empty.asset_materializations_for_node("documents")[0].metadata["empty_reason"].value == reason
    wh = warehouse.get()
    stored = wh.read_table("documents", [key])
    assert stored.empty and list(stored.columns) == ["doc_id", "shard", *DOCUMENT_COLUMNS[1:]]
    assert str(stored["offset"].dtype) == "int64"
    kept = wh.read_table("documents", [key, "good"])["source_doc_id"]  # after the rerun of `key`
    assert len(kept) == 1  # the good shard is unaffected
    rows_in_file = len(content.splitlines()) - name.endswith(".csv")  # less the header

    class Describer:  # the next asset's stage, on the empty partition, with no model
        name = "fake"

        def describe_documents(self, titles, texts, progress=None):
            return [f"About {t}." for t in titles]

    described = describe_documents(stored, Describer())
    assert described.value.empty and described.stats["rows"] == 0
    fault("counted drop", rows_in=1 + rows_in_file, kept=kept, dropped=rows_in_file)


# ---- a shard of any size: the documents asset writes its passages in batches as it reads ---------------
def test_the_documents_asset_writes_a_big_shard_in_row_groups(inbox, tmp_path, fault):
    n = 5_000  # more passages than one batch (4,096)
    with open(inbox / "big.jsonl", "w", encoding="utf8") as f:
        for i in range(n):
            f.write(json.dumps({"title": f"Doc {i}", "text": f"Document {i}. {GOOD_TEXT}"}) + "\n")
    resources = documents_resources(inbox, tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("document_shards", ["big"])
    result = dg.materialize([documents], partition_key="big", instance=instance, resources=resources)
    assert result.success
    event = result.asset_materializations_for_node("documents")[0]
    wh = resources["warehouse"].get()
    path = wh.partition_path("documents", "big")
    assert pq.ParquetFile(path).num_row_groups == 2
    stored = wh.read_table("documents", ["big"])
    assert len(stored) == n == event.metadata["rows"].value and stored["doc_id"].is_unique
    assert event.metadata["data_version"].value == frame_version(stored)
    catalog = wh.query("SELECT row_count FROM catalog.materializations WHERE partition_key = 'big'")
    assert catalog["row_count"].tolist() == [n]
    assert not list(path.parent.glob("*.tmp"))
    fault("accepted", rows_in=n, kept=stored["source_doc_id"])
