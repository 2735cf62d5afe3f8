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


# ---- the suite's table (bench/fault_suite_table.py reads these from the JUnit XML) --------------------
OUTCOMES = {
    "clear error": "an exception or error answer that names the file (and line), the URL or the limit",
    "counted drop": "bad rows left out (or cut) and counted by reason, the rest kept",
    "refused": "a bad entry or request refused with its reason named; the rest goes on",
    "accepted": "an odd but valid input taken as it is",
    "redacted": "credentials used but never shown",
    "stopped": "a stuck peer or blocked step given up on (closed, failed) within a bound",
    "recovered": "a killed run cleaned up and its rerun finished",
    "n/a": "a setting checked, no input",
}


@pytest.fixture
def fault(record_property):
    """`fault(outcome, rows_in=..., kept=..., dropped=..., bound_s=...)` records this case's row of the table.

    Rows are counted from real outputs: `kept` holds one key per stored row (ids, titles), `rows_in` the
    rows that went in and `dropped` the ones the code counted as dropped; lost = rows_in - dropped - distinct
    kept, duplicated = kept - distinct kept, and both must be 0. Without `kept` the case has no rows ("n/a").
    """

    def record(
        outcome: str, *, rows_in: int | None = None, kept=None, dropped: int = 0, bound_s: float | None = None
    ) -> None:
        assert outcome in OUTCOMES, outcome
        record_property("outcome", outcome)
        lost = duplicated = "n/a"
        if kept is not None:
            kept = list(kept)
            lost, duplicated = rows_in - dropped - len(set(kept)), len(kept) - len(set(kept))
        record_property("rows_lost", lost)
        record_property("rows_duplicated", duplicated)
        record_property("time_bound_s", "n/a" if bound_s is None else bound_s)
        assert lost in ("n/a", 0) and duplicated in ("n/a", 0), f"{lost} rows lost, {duplicated} duplicated"

    return record
