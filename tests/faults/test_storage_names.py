"""Shard names map one-to-one to warehouse files (fi_resources.warehouse.safe_name): on main `a b` and `a_b`
(or `中文字` and `日本語`) shared one Parquet file and one shard's rows were silently replaced."""

from pathlib import Path

import dagster as dg
import pytest

from fi_assets.documents import documents
from fi_resources.warehouse import Warehouse, safe_name
from tests.faults.conftest import documents_resources, good_shard

COLLIDING = [
    ("a b", "a_b"),
    ("中文字", "日本語"),
    ("a/b", "a_b"),
    ("x" * 300, "x" * 301),
    ("a\udcff", "a\udcfe"),
]


@pytest.mark.parametrize("pair", COLLIDING)
def test_names_that_sanitize_alike_get_different_files(pair, fault):
    first, second = (safe_name(n) for n in pair)
    assert first != second
    assert all(len(n) <= 200 and "/" not in n for n in (first, second))
    fault("accepted")


@pytest.mark.parametrize("name", ["wikipedia-001", "a_b", "shard.v2", "k=v", "A-Z_0.9"])
def test_safe_ascii_names_are_kept_so_existing_warehouses_still_work(name, fault):
    assert safe_name(name) == name
    fault("accepted")


@pytest.mark.parametrize("key", ["../../outside", "..", ".", "", "/etc/passwd"])
def test_a_partition_key_never_names_a_path_outside_its_table(tmp_path, key, fault):
    wh = Warehouse(tmp_path / "home")
    path = wh.partition_path("documents", key)
    assert path.parent == wh.table_dir("documents") and path.resolve().parent == wh.table_dir("documents")
    fault("accepted")


def test_colliding_shards_both_keep_their_rows_through_the_documents_asset(inbox, tmp_path, fault):
    names = ["a b", "a_b", "中文字", "日本語"]
    for name in names:
        good_shard(inbox / f"{name}.jsonl", title=name)
    resources = documents_resources(inbox, tmp_path / "home")
    warehouse = resources["warehouse"]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("document_shards", names)
    for name in names + names:  # each shard twice: the rerun replaces its rows
        assert dg.materialize([documents], partition_key=name, instance=instance, resources=resources).success
    wh = warehouse.get()
    files = sorted(Path(wh.table_dir("documents")).glob("*.parquet"))
    assert len(files) == 4
    for name in names:
        assert wh.read_table("documents", [name])["title"].tolist() == [name]
    assert sorted(wh.query("SELECT title FROM documents")["title"]) == sorted(names)
    fault("accepted", rows_in=len(names), kept=wh.query("SELECT title FROM documents")["title"])
