"""The DuckDB warehouse: Parquet per partition, DuckDB views over them, and the materialization catalog.

DuckDB allows one writing process per file, and Dagster runs partitions in parallel processes. So table
data never goes through a DuckDB write: each (asset, partition) is one Parquet file written atomically
(temp file + rename), and the DuckDB file only holds views over those files plus the small
`catalog.materializations` table. Those short writes are serialised across processes with a file lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

UNPARTITIONED = "__all__"
_SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")

CATALOG_DDL = """
CREATE SCHEMA IF NOT EXISTS catalog;
CREATE TABLE IF NOT EXISTS catalog.materializations (
    asset_key VARCHAR NOT NULL,
    partition_key VARCHAR,
    run_id VARCHAR,
    code_version VARCHAR,
    data_version VARCHAR NOT NULL,
    upstream JSON,
    row_count BIGINT,
    bytes BIGINT,
    table_path VARCHAR,
    artifact_path VARCHAR,
    materialized_at TIMESTAMP NOT NULL
);
"""


@dataclass(frozen=True)
class StagedTable:
    """A partition's Parquet written to a temp file (`Warehouse.stage_table`), not yet in place."""

    table: str
    path: Path
    final_path: Path
    rows: int
    data_version: str


@dataclass(frozen=True)
class Artifact:
    """A model-like asset: a folder in the artifact store plus a few facts about it."""

    path: str
    data_version: str = ""
    info: dict = field(default_factory=dict)


def default_home() -> Path:
    return Path(os.environ.get("FI_HOME", ".fi")).resolve()


# Longer names are shortened (and hashed): with ".parquet" or a temp suffix they must fit a 255-byte file name.
_MAX_NAME = 200


def safe_name(text: str) -> str:
    """A file name for `text`, one-to-one: a name of safe ASCII characters is kept as it is (so existing
    warehouses still work); any other keeps its safe characters and gets "~" and a hash of the exact name.
    "~" is never safe, so a hashed name cannot equal a kept one, and it is never "." or "..": the result is
    always one path component."""
    sanitized = _SAFE.sub("_", text)
    if sanitized == text and text not in ("", ".", "..") and len(text) <= _MAX_NAME:
        return text
    # surrogateescape: a file name that is not valid UTF-8 still hashes to its own bytes.
    digest = hashlib.sha1(text.encode("utf8", "surrogateescape")).hexdigest()[:10]
    return f"{sanitized[: _MAX_NAME - 11]}~{digest}"


def _sha256_file(path: Path, h: hashlib._Hash | None = None) -> hashlib._Hash:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


def hash_folder(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            _sha256_file(p, h)
    return h.hexdigest()[:16]


class Warehouse:
    """Files and the DuckDB catalog under one data home (FI_HOME)."""

    def __init__(self, home: str | Path | None = None, lock_timeout_s: float = 120.0):
        self.home = Path(home).resolve() if home else default_home()
        self.db_path = self.home / "warehouse.duckdb"
        self.tables_dir = self.home / "tables"
        self.artifacts_dir = self.home / "artifacts"
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.home / "warehouse.lock"), timeout=lock_timeout_s)

    # ---- DuckDB connections -------------------------------------------------------------------
    def _write_connection(self) -> duckdb.DuckDBPyConnection:
        # Another process (a user's shell, the UI's SQL) may hold the file briefly: retry, then fail clearly.
        deadline = time.monotonic() + 60
        while True:
            try:
                con = duckdb.connect(str(self.db_path))
                con.execute(CATALOG_DDL)
                return con
            except duckdb.IOException as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"DuckDB file {self.db_path} stayed locked by another process"
                    ) from exc
                time.sleep(0.5)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Read-only SQL against the warehouse (views over Parquet plus the catalog)."""
        with self._lock, self._write_connection() as con:
            return con.execute(sql, params or []).df()

    def read_only_query(
        self, sql: str, params: list | None = None, lock_timeout_s: float = 10.0
    ) -> pd.DataFrame | None:
        """SQL for a reader that must never make a pipeline write fail: a read-only connection, opened only
        under the writers' file lock (so no writer has the file open, and writers wait for the lock instead
        of meeting DuckDB's lock). None when there is no database yet or the lock stays busy."""
        if not self.db_path.exists():
            return None
        try:
            self._lock.acquire(timeout=lock_timeout_s)
        except TimeoutError:
            return None
        try:
            with duckdb.connect(str(self.db_path), read_only=True) as con:
                return con.execute(sql, params or []).df()
        finally:
            self._lock.release()

    def latest_data_version(self, asset: str) -> str | None:
        """The data version of the asset's latest recorded materialization (None if it has none)."""
        found = self.query(
            "SELECT data_version FROM catalog.materializations WHERE asset_key = ? "
            "ORDER BY materialized_at DESC LIMIT 1",
            [asset],
        )
        return str(found.iloc[0, 0]) if len(found) else None

    # ---- tables -------------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.tables_dir / safe_name(table)

    def partition_path(self, table: str, partition: str | None) -> Path:
        return self.table_dir(table) / f"{safe_name(partition or UNPARTITIONED)}.parquet"

    def write_table(self, table: str, partition: str | None, df: pd.DataFrame) -> tuple[Path, str]:
        """Write one partition atomically; a rerun replaces it (no duplicates). Returns (path, data version)."""
        staged = self.stage_table(table, partition, [df])
        return self.publish_table(staged), staged.data_version

    def stage_table(self, table: str, partition: str | None, batches: Iterable[pd.DataFrame]) -> StagedTable:
        """Write a partition's rows, batch by batch, into a temp file beside it (one row group per batch at
        most, so memory stays that of one batch); `publish_table` puts it in place. Later batches are cast to
        the first one's schema. The data version equals `frame_version` of all batches as one frame."""
        path = self.partition_path(table, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        version, rows, columns, writer = hashlib.sha256(), 0, None, None
        try:
            for df in batches:
                df = df.reset_index(drop=True)
                if writer is None:
                    arrow = pa.Table.from_pandas(df, preserve_index=False)
                    writer, columns = pq.ParquetWriter(tmp, arrow.schema), list(df.columns)
                else:
                    arrow = pa.Table.from_pandas(df, schema=writer.schema, preserve_index=False)
                writer.write_table(arrow)
                version.update(_row_hashes(df))
                rows += len(df)
            if writer is None:
                raise ValueError(f"{table}: no batch to write for partition {partition!r}")
            writer.close()
        except BaseException as exc:
            if writer is not None:
                with contextlib.suppress(Exception):  # the error that got here is the one to report
                    writer.close()
            tmp.unlink(missing_ok=True)  # a full disk must not keep a half-written copy
            if isinstance(exc, OSError):  # pyarrow's message names no file
                raise OSError(exc.errno, f"could not write {path}: {exc}") from exc
            raise
        version.update(",".join(map(str, columns)).encode())
        return StagedTable(table, tmp, path, rows, version.hexdigest()[:16])

    def publish_table(self, staged: StagedTable) -> Path:
        """Move a staged partition into place (atomic: readers see the old file or the new one)."""
        os.replace(staged.path, staged.final_path)
        self._refresh_view(staged.table)
        return staged.final_path

    def read_table(self, table: str, partitions: list[str] | None = None) -> pd.DataFrame:
        """All partitions (or the given ones that exist) of a table as one DataFrame."""
        folder = self.table_dir(table)
        if partitions is None:
            files = sorted(folder.glob("*.parquet"))
        else:
            files = [self.partition_path(table, p) for p in partitions]
            files = [f for f in files if f.exists()]
        frames = [pd.read_parquet(f) for f in files]
        frames = [f for f in frames if len(f.columns)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def has_partition(self, table: str, partition: str | None) -> bool:
        return self.partition_path(table, partition).exists()

    def _refresh_view(self, table: str) -> None:
        glob = str(self.table_dir(table) / "*.parquet").replace("'", "''")
        name = safe_name(table)  # quoted: a safe name may still hold "-", "." or "~", not '"'
        with self._lock, self._write_connection() as con:
            con.execute(
                f'CREATE OR REPLACE VIEW main."{name}" AS '
                f"SELECT * FROM read_parquet('{glob}', union_by_name = true)"
            )

    # ---- artifacts ----------------------------------------------------------------------------
    def staging_dir(self, asset: str) -> Path:
        """A fresh folder for an asset to write a model into; `publish_artifact` versions it."""
        path = self.artifacts_dir / safe_name(asset) / f"_staging-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def staged_copy(self, asset: str, source: Path) -> Path:
        """A staging folder for `asset` holding `source`'s files as hard links (a copy where the file system
        has none): the same model published under another asset without doubling its bytes."""
        path = self.staging_dir(asset)

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(source, path, dirs_exist_ok=True, copy_function=link)
        return path

    def publish_artifact(self, asset: str, staging: Path, version: str = "") -> tuple[Path, str]:
        """Move a staged folder to artifacts/<asset>/<content hash>/ (one folder per data version).
        `version`: the folder's `hash_folder`, when the caller already computed it."""
        version = version or hash_folder(staging)
        final = self.artifacts_dir / safe_name(asset) / version
        if final.exists():
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)
        return final, version

    # ---- catalog ------------------------------------------------------------------------------
    def record_materialization(
        self,
        asset_key: str,
        partition_key: str | None,
        run_id: str | None,
        data_version: str,
        row_count: int | None,
        table_path: Path | None = None,
        artifact_path: Path | None = None,
        code_version: str | None = None,
        upstream: dict | None = None,
    ) -> None:
        size = table_path.stat().st_size if table_path and table_path.exists() else None
        if artifact_path and artifact_path.exists():
            size = sum(p.stat().st_size for p in artifact_path.rglob("*") if p.is_file())
        row = [
            asset_key,
            partition_key,
            run_id,
            code_version,
            data_version,
            json.dumps(upstream or {}),
            row_count,
            size,
            str(table_path) if table_path else None,
            str(artifact_path) if artifact_path else None,
            datetime.now(UTC).replace(tzinfo=None),
        ]
        with self._lock, self._write_connection() as con:
            con.execute("INSERT INTO catalog.materializations VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)


def frame_version(df: pd.DataFrame) -> str:
    """A table's data version: a hash of its values and column names."""
    version = hashlib.sha256(_row_hashes(df))
    version.update(",".join(map(str, df.columns)).encode())
    return version.hexdigest()[:16]


def _row_hashes(df: pd.DataFrame) -> bytes:
    # One hash per row: the hashes of a frame's batches, joined, are the whole frame's.
    return pd.util.hash_pandas_object(_hashable(df), index=False).values.tobytes()


def _hashable(df: pd.DataFrame) -> pd.DataFrame:
    # Lists/dicts (spans, metadata) are not hashable by pandas: hash their JSON text instead.
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(
                lambda v: v if isinstance(v, str | type(None)) else json.dumps(v, default=str)
            )
    return out
