"""Partition keys come from file names a user chose: wherever one reaches SQL (the DuckDB catalog) or a path
(the inbox, the warehouse's Parquet files), it is a bound parameter, hashed into one file name, or refused.

Reviewed (issue 12): `inbox.resolve_shard` refuses keys that are not a plain file name of the inbox
(`shard_key_problem`); `Warehouse.partition_path` maps any key to one file name in the table's folder
(`safe_name`: no separator, no glob character, never '.' or '..'); `Warehouse.record_materialization` binds
every value ('?'); the lineage reader filters Parquet with pyarrow filters and the catalog with bound
parameters. No partition key is interpolated into SQL or a glob anywhere.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fi_assets.documents import documents
from fi_resources.inbox import InputFileError, resolve_shard, shard_key_problem
from fi_resources.warehouse import Warehouse
from tests.faults.conftest import documents_resources, good_shard

DROP = "x'); DROP TABLE catalog.materializations; --"
# Keys a file name can hold (so the sensor can make them partitions) that mean something to SQL or a glob.
FILE_NAME_KEYS = ["it's", 'say "hi"', DROP, "a;DROP TABLE documents", "50%_off", "[1]", "*", "q?"]
# Keys no shard file can have, as a hand-made run request or a forged partition could still send them.
FORGED_KEYS = ["..", "a\\b", "../../outside", "/etc/passwd", "a/b", "a\0b", "a\nb", "", "."]


@pytest.mark.parametrize("key", FILE_NAME_KEYS + FORGED_KEYS)
def test_a_hostile_key_is_bound_in_sql_and_one_file_in_its_table(tmp_path: Path, key: str, fault) -> None:
    wh = Warehouse(tmp_path / "home")
    path, version = wh.write_table("documents", key, pd.DataFrame({"shard": [key], "n": [1]}))
    wh.write_table("documents", "other", pd.DataFrame({"shard": ["other"], "n": [2]}))
    assert path.parent == wh.table_dir("documents") and path.resolve().parent == wh.table_dir("documents")
    assert sorted(p.name for p in wh.tables_dir.rglob("*") if p.is_file()) == sorted(
        [path.name, "other.parquet"]
    )
    wh.record_materialization("documents", key, "run-1", version, 1, table_path=path)
    rows = wh.query(
        "SELECT partition_key, table_path FROM catalog.materializations WHERE partition_key = ?", [key]
    )
    assert rows.to_dict("records") == [{"partition_key": key, "table_path": str(path)}]
    # The catalog and the view survived: nothing in the key ran as SQL or widened the view's glob.
    assert wh.query("SELECT count(*) AS n FROM catalog.materializations").n.iloc[0] == 1
    assert sorted(wh.query("SELECT shard FROM documents").shard) == sorted([key, "other"])
    assert wh.read_table("documents", [key]).shard.tolist() == [key]
    fault("accepted", rows_in=2, kept=wh.query("SELECT shard FROM documents").shard)


@pytest.mark.parametrize("key", FORGED_KEYS + ["a\tb", "a...b", ".hidden"])
def test_a_forged_key_is_refused_before_any_file_is_opened(
    inbox: Path, tmp_path: Path, key: str, fault
) -> None:
    good_shard(tmp_path / "outside.jsonl")
    (tmp_path / "etc").mkdir()
    assert shard_key_problem(key) is not None
    with pytest.raises(InputFileError, match="not a shard of"):
        resolve_shard(inbox, key)
    fault("refused")


def test_shards_with_sql_in_their_names_go_through_the_documents_asset(
    inbox: Path, tmp_path: Path, fault
) -> None:
    names = ["it's", DROP.replace("/", ""), "a;DROP TABLE documents", "[1]"]
    for name in names:
        good_shard(inbox / f"{name}.jsonl", title=name)
    resources = documents_resources(inbox, tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("document_shards", names)
    for name in names + names:  # each shard twice: the rerun replaces its rows
        assert resolve_shard(inbox, name) == inbox / f"{name}.jsonl"
        assert dg.materialize([documents], partition_key=name, instance=instance, resources=resources).success
    wh = resources["warehouse"].get()
    catalog = wh.query("SELECT partition_key FROM catalog.materializations WHERE asset_key = 'documents'")
    assert sorted(catalog.partition_key) == sorted(names + names)  # one record per materialization
    assert sorted(wh.query("SELECT DISTINCT title FROM documents").title) == sorted(names)
    for name in names:
        assert wh.read_table("documents", [name]).title.unique().tolist() == [name]
    fault("accepted", rows_in=len(names), kept=wh.query("SELECT title FROM documents").title)
