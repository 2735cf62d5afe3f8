"""A real inbox folder per test, and small writers for the files a hostile user drops into it."""

import json
from pathlib import Path

import pytest

from fi_resources.io_manager import WarehouseIOManager
from fi_resources.resources import DocumentSettingsResource, InboxSettingsResource, WarehouseResource

# Long enough to make one passage (min_passage_chars is 200).
GOOD_TEXT = "The harbour town keeps a record of every ship that comes in. " * 6


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    return path


def good_shard(path: Path, title: str = "Good") -> Path:
    return write_jsonl(path, [{"title": title, "text": GOOD_TEXT}])


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def documents_resources(inbox: Path, home: Path) -> dict:
    """What the `documents` asset needs to read `inbox` into a warehouse under `home` (no built-in shards)."""
    warehouse = WarehouseResource(home=str(home))
    return {
        "inbox": InboxSettingsResource(document_folder=str(inbox), builtin_shards=0),
        "document_settings": DocumentSettingsResource(),
        "warehouse": warehouse,
        "io_manager": WarehouseIOManager(warehouse=warehouse),
    }
