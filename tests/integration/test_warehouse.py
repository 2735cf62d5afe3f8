import multiprocessing as mp

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fi_resources.warehouse import Warehouse, frame_version


def _write_many(home: str, worker: int) -> None:
    wh = Warehouse(home)
    for i in range(8):
        df = pd.DataFrame({"pair_id": [f"{worker}-{i}-{j}" for j in range(5)], "v": range(5)})
        path, version = wh.write_table("pairs", f"shard-{worker}-{i}", df)
        wh.record_materialization("pairs", f"shard-{worker}-{i}", f"run-{worker}", version, len(df), path)


def test_parallel_partition_writers_do_not_fail_on_the_duckdb_lock(tmp_path):
    procs = [mp.get_context("spawn").Process(target=_write_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    wh = Warehouse(tmp_path)
    assert wh.query("SELECT count(*) FROM pairs").iloc[0, 0] == 3 * 8 * 5
    assert wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0] == 24
    # The file is a real DuckDB database a user can open once the writers are gone.
    with duckdb.connect(str(wh.db_path), read_only=True) as con:
        assert (
            con.execute("SELECT count(DISTINCT partition_key) FROM catalog.materializations").fetchone()[0]
            == 24
        )


def test_rewriting_a_partition_replaces_it_without_duplicates(tmp_path):
    wh = Warehouse(tmp_path)
    df = pd.DataFrame({"x": [1, 2, 3]})
    _, v1 = wh.write_table("t", "a", df)
    _, v2 = wh.write_table("t", "a", df)
    wh.write_table("t", "b", pd.DataFrame({"x": [4]}))
    assert v1 == v2  # same content, same data version
    assert sorted(wh.read_table("t")["x"]) == [1, 2, 3, 4]
    assert wh.query("SELECT count(*) FROM t").iloc[0, 0] == 4
    _, v3 = wh.write_table("t", "a", pd.DataFrame({"x": [9]}))
    assert v3 != v1
    assert sorted(wh.read_table("t", ["a"])["x"]) == [9]
    assert not list(wh.table_dir("t").glob("*.tmp"))


def test_latest_data_version_is_the_last_recorded_materialization(tmp_path):
    wh = Warehouse(tmp_path)
    assert wh.latest_data_version("model") is None
    for run, content in (("r1", [1]), ("r2", [2])):
        path, version = wh.write_table("model", None, pd.DataFrame({"x": content}))
        wh.record_materialization("model", None, run, version, 1, path)
    assert wh.latest_data_version("model") == version
    assert wh.latest_data_version("other") is None


def test_artifacts_are_versioned_by_content(tmp_path):
    wh = Warehouse(tmp_path)
    staged = wh.staging_dir("model")
    (staged / "weights.bin").write_bytes(b"abc")
    final, version = wh.publish_artifact("model", staged)
    assert final.name == version and (final / "weights.bin").read_bytes() == b"abc"
    again = wh.staging_dir("model")
    (again / "weights.bin").write_bytes(b"abc")
    assert wh.publish_artifact("model", again) == (final, version)
    assert not again.exists()


def test_a_partition_staged_in_batches_reads_back_whole_with_the_frame_s_version(tmp_path):
    wh = Warehouse(tmp_path)
    frames = [
        pd.DataFrame({"doc_id": [f"d{i}-{j}" for j in range(3)], "n": [i * 10 + j for j in range(3)]})
        for i in range(4)
    ]
    whole = pd.concat(frames, ignore_index=True)
    staged = wh.stage_table("docs", "s1", iter(frames))
    assert not wh.has_partition("docs", "s1")  # not in place until published
    assert staged.rows == 12 and staged.data_version == frame_version(whole)
    wh.publish_table(staged)
    pd.testing.assert_frame_equal(wh.read_table("docs", ["s1"]), whole)
    assert pq.ParquetFile(wh.partition_path("docs", "s1")).num_row_groups == 4
    assert wh.query("SELECT count(*) FROM docs").iloc[0, 0] == 12


def test_a_failing_batch_leaves_no_temp_file_and_the_old_partition(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_table("docs", "s1", pd.DataFrame({"n": [1]}))

    def batches():
        yield pd.DataFrame({"n": [2]})
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        wh.stage_table("docs", "s1", batches())
    assert not list(wh.table_dir("docs").glob("*.tmp"))
    assert wh.read_table("docs", ["s1"])["n"].tolist() == [1]


def test_a_table_name_that_is_not_a_plain_sql_identifier_still_gets_its_view(tmp_path):
    wh = Warehouse(tmp_path)
    for name in ("judged-pairs.v2", "Ünïcode table"):
        wh.write_table(name, "a", pd.DataFrame({"x": [1, 2]}))
        view = wh.table_dir(name).name
        assert wh.query(f'SELECT count(*) FROM "{view}"').iloc[0, 0] == 2
