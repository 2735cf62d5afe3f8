"""Reading a user's local copy of a released template bank (the `fineinstructions/finetemplates` layout):
one Parquet or JSONL file, or a folder of them (a downloaded dataset's `data/*.parquet` shards), streamed so
no whole file is loaded at once (the bank table itself is built in memory). The mapping to `query_templates` rows is pure
(`fi_resources.logic.released`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fi_resources.inbox import InputFileError
from fi_resources.logic.released import resolve_columns

BANK_SUFFIXES = (".parquet", ".jsonl")
JSONL_CHUNK_ROWS = 10_000  # rows of a JSONL file handed on at a time (a Parquet file: one row group)


@dataclass(frozen=True)
class BankChunk:
    """Consecutive rows of one file, with the file's column for each field (`logic.released.resolve_columns`)."""

    path: Path
    columns: dict[str, str]
    rows: list[dict]


def bank_files(path: str | Path) -> list[Path]:
    """The file `path`, or the Parquet/JSONL files under the folder `path` in name order. `InputFileError`
    when there is nothing to read."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix not in BANK_SUFFIXES:
            raise InputFileError(f"{path}: unsupported file type (use {', '.join(BANK_SUFFIXES)})")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BANK_SUFFIXES)
        if not files:
            raise InputFileError(f"{path}: holds no {' or '.join(BANK_SUFFIXES)} file")
        return files
    raise InputFileError(f"{path}: no such file or folder")


def iter_bank_chunks(path: str | Path, limit: int = 0) -> Iterator[BankChunk]:
    """The rows of the bank at `path` (a file or a folder, see `bank_files`), at most `limit` of them
    (0 = all): a Parquet file a row group at a time, reading only the columns the mapping uses; a JSONL file
    a line at a time. Raises `InputFileError` naming the file (and line) for a file that cannot be read, and
    `ValueError` naming the file and its columns when a required column is missing."""
    left = limit if limit > 0 else None
    for file in bank_files(path):
        reader = _parquet_chunks if file.suffix == ".parquet" else _jsonl_chunks
        for chunk in reader(file):
            if left is not None:
                chunk = BankChunk(chunk.path, chunk.columns, chunk.rows[:left])
                left -= len(chunk.rows)
            if chunk.rows:
                yield chunk
            if left == 0:
                return


def _parquet_chunks(path: Path) -> Iterator[BankChunk]:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputFileError(f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc})") from exc
    with f:
        columns = resolve_columns(f.schema_arrow.names, str(path))
        wanted = sorted(set(columns.values()))
        for group in range(f.num_row_groups):
            try:
                rows = f.read_row_group(group, columns=wanted).to_pylist()
            except Exception as exc:  # a damaged row group: name it rather than fail somewhere later
                raise InputFileError(f"{path}: row group {group} cannot be read ({exc})") from exc
            yield BankChunk(path, columns, rows)


def _jsonl_chunks(path: Path) -> Iterator[BankChunk]:
    """One JSON object per line (blank lines skipped); the first object's keys decide the columns."""
    columns: dict[str, str] | None = None
    rows: list[dict] = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf8")
            except UnicodeDecodeError as exc:
                raise InputFileError(f"{path}: line {n} is not UTF-8 text") from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                cut = "" if raw.endswith(b"\n") else "; the file may be cut short"
                raise InputFileError(f"{path}: line {n} is not valid JSON ({exc.msg}{cut})") from exc
            if not isinstance(row, dict):
                raise InputFileError(f"{path}: line {n} is not a JSON object")
            if columns is None:
                columns = resolve_columns(list(row), f"{path} (line {n}, the first row)")
            rows.append(row)
            if len(rows) >= JSONL_CHUNK_ROWS:
                yield BankChunk(path, columns, rows)
                rows = []
    if rows and columns is not None:
        yield BankChunk(path, columns, rows)
