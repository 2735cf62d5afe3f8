"""fi_resources.sources.iter_table_rows: shard files are streamed, not loaded whole."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fi_resources import sources
from fi_resources.inbox import InputFileError
from fi_resources.sources import iter_table_rows

COLUMNS = ("text", "content")


def test_jsonl_is_read_a_line_at_a_time(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"title": "A", "text": "first"}) + "\n{broken\n")
    rows = iter_table_rows(path, COLUMNS)
    assert next(rows) == ("A", "first")  # yielded before the broken line is read
    with pytest.raises(InputFileError, match="line 2 is not valid JSON"):
        next(rows)


def test_jsonl_text_column_is_chosen_from_the_first_row(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"content": "a"}) + "\n" + json.dumps({"text": "b", "content": "c"}) + "\n")
    assert list(iter_table_rows(path, COLUMNS)) == [(None, "a"), (None, "c")]
    (tmp_path / "t.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InputFileError, match=r"line 1 \(the first row\) needs one of the columns"):
        list(iter_table_rows(tmp_path / "t.jsonl", COLUMNS))


def test_parquet_is_read_in_batches_of_two_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "ROW_BATCH", 3)
    path = tmp_path / "s.parquet"
    frame = pd.DataFrame({"title": [f"t{i}" for i in range(10)], "content": [f"c{i}" for i in range(10)]})
    frame["other"] = [b"x" * 10] * 10  # never read
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=4)
    reads = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        reads.append(kwargs)
        for batch in real(self, *args, **kwargs):
            reads.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert list(iter_table_rows(path, COLUMNS)) == [(f"t{i}", f"c{i}") for i in range(10)]
    assert reads[0] == {"batch_size": 3, "columns": ["title", "content"]}
    assert max(reads[1:]) <= 3


def test_csv_is_read_in_chunks_and_a_header_only_file_still_names_its_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "ROW_BATCH", 2)
    path = tmp_path / "s.csv"
    pd.DataFrame({"text": ["007", "NA", "", "x", "y"]}).to_csv(path, index=False)
    assert [t for _, t in iter_table_rows(path, COLUMNS)] == ["007", "NA", "", "x", "y"]
    (tmp_path / "h.csv").write_text("body\n")
    with pytest.raises(InputFileError, match="needs one of the columns"):
        list(iter_table_rows(tmp_path / "h.csv", COLUMNS))
