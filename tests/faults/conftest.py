"""A real inbox folder per test, and small writers for the files a hostile user drops into it."""

import json
from pathlib import Path

import pytest

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
