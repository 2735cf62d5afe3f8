"""Credentials never reach anything the pipeline stores (issue 12, security defaults).

A real run: the bundled server (`python -m fi_resources.serve`, tiny random model, 127.0.0.1) serves the
teacher of the paper profile; the endpoint URL carries `user:password@` and FI_LLM_API_KEY holds another
secret. `documents` and the served `document_descriptions` are materialized for one shard on a persistent
Dagster instance (DAGSTER_HOME with the project's dagster.yaml), then a second run against a dead endpoint
with the same credentials fails (its error is logged and stored). Every file under FI_HOME and DAGSTER_HOME,
text or binary (SQLite, DuckDB, Parquet, compute logs), is then searched for both secrets, as is captured
log output.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import zlib
from contextlib import closing
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fi_assets.documents import document_descriptions, documents
from fi_resources.io_manager import WarehouseIOManager
from fi_resources.resources import (
    DocumentSettingsResource,
    InboxSettingsResource,
    ModelsResource,
    TeacherSettingsResource,
    WarehouseResource,
)
from tests.faults.conftest import good_shard
from tests.integration.test_backends import free_port, server, tiny_lm_path  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
URL_PASSWORD = "urlPa55-Zq7Xw"
API_KEY = "apiKey-Jm4Rt9"
USER = "svc-alice"


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{URL_PASSWORD}@")


SECRETS = (URL_PASSWORD, API_KEY)


def _inflated(data: bytes) -> bytes:
    """`data` zlib/gzip-decompressed, else b"" (Dagster stores its snapshots zlib-compressed)."""
    for wbits in (zlib.MAX_WBITS, zlib.MAX_WBITS | 16):
        try:
            return zlib.decompress(data, wbits)
        except zlib.error:
            pass
    return b""


def _cells(path: Path) -> list[bytes]:
    """Every value stored in a SQLite, DuckDB or Parquet file (their pages may compress text), as bytes."""
    magic = path.read_bytes()[:16]
    if magic.startswith(b"SQLite format 3"):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = [row for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
    elif path.suffix == ".duckdb":
        with duckdb.connect(str(path), read_only=True) as db:
            tables = db.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            rows = [row for s, t in tables for row in db.execute(f'SELECT * FROM "{s}"."{t}"').fetchall()]
    elif path.suffix == ".parquet":
        rows = [tuple(pq.read_table(path).to_pandas().astype(str).to_numpy().ravel())]
    else:
        return []
    cells = [v if isinstance(v, bytes) else str(v).encode("utf8") for row in rows for v in row]
    return cells + [_inflated(c) for c in cells if isinstance(c, bytes)]


def hits(folder: Path) -> list[str]:
    """Files under `folder` that hold a secret: in their raw bytes (UTF-8 or UTF-16), compressed in them
    (zlib, gzip), or in a value of a SQLite, DuckDB or Parquet file."""
    needles = [s.encode(enc) for s in SECRETS for enc in ("utf8", "utf-16-le")]
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blobs = [data, _inflated(data), *_cells(path)]
        found += [f"{path} holds {n!r}" for n in needles if any(n in blob for blob in blobs)]
    return found


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    fi_home, dagster_home = tmp_path / "fi", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home)
    monkeypatch.setenv("FI_HOME", str(fi_home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("FI_LLM_API_KEY", API_KEY)
    # The paper profile with the tiny models in-process (its own are hub names, offline here).
    monkeypatch.setenv("FI_STUDENT_BASE", "random:tiny-llama")
    monkeypatch.setenv("FI_ENCODER", "random:tiny-bert")
    for var in ("FI_LLM_BASE_URL", "FI_JUDGE_BASE_URL", "FI_STUDENT_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return fi_home, dagster_home


def resources(fi_home: Path, url: str, model: str, **models: object) -> dict:
    warehouse = WarehouseResource(home=str(fi_home))
    return {
        "inbox": InboxSettingsResource(document_folder=str(fi_home / "inbox"), builtin_shards=0),
        "document_settings": DocumentSettingsResource(),
        "teacher_settings": TeacherSettingsResource(),
        "warehouse": warehouse,
        "io_manager": WarehouseIOManager(warehouse=warehouse),
        "models": ModelsResource(
            profile="paper", warehouse=warehouse, llm_base_url=url, teacher_model=model, **models
        ),
    }


def materialize(instance, fi_home: Path, shard: str, url: str, model: str, **models: object):
    return dg.materialize(
        [documents, document_descriptions],
        partition_key=shard,
        instance=instance,
        resources=resources(fi_home, url, model, **models),
        raise_on_error=False,
    )


def step_error(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run was expected to fail a step"
    return str(failures[0].event_specific_data.error)


def test_no_secret_in_any_stored_file_or_log(homes, server, tiny_lm_path, caplog, monkeypatch):  # noqa: F811
    fi_home, dagster_home = homes
    (fi_home / "inbox").mkdir(parents=True)
    shards = ["harbour", "keyed", "dead", "both"]
    for shard in shards:
        good_shard(fi_home / "inbox" / f"{shard}.jsonl", title=shard)
    caplog.set_level(logging.DEBUG)
    model = str(tiny_lm_path)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("document_shards", shards)
        # 1. user:password@ in FI_LLM_BASE_URL (sent as basic auth).
        monkeypatch.delenv("FI_LLM_API_KEY")
        monkeypatch.setenv("FI_LLM_BASE_URL", with_credentials(server))
        ok = materialize(instance, fi_home, "harbour", "", model)
        assert ok.success, step_error(ok)
        described = ok.asset_materializations_for_node("document_descriptions")[0]
        assert described.metadata["model_calls"].value >= 1  # the served teacher really answered
        # 2. The API key from the environment (a bearer token), the URL from the environment too.
        monkeypatch.setenv("FI_LLM_API_KEY", API_KEY)
        monkeypatch.setenv("FI_LLM_BASE_URL", server)
        ok = materialize(instance, fi_home, "keyed", "", model)
        assert ok.success, step_error(ok)
        assert ok.asset_materializations_for_node("document_descriptions")[0].metadata["model_calls"].value
        # 3. Credentials against a dead port: the failure's message and stack go to run storage.
        monkeypatch.delenv("FI_LLM_API_KEY")
        monkeypatch.setenv("FI_LLM_BASE_URL", with_credentials(f"http://127.0.0.1:{free_port()}/v1"))
        failed = materialize(instance, fi_home, "dead", "", model, llm_max_retries=0)
        assert not failed.success and "Connection refused" in step_error(failed)
        # 4. Both at once (URL from the environment): refused, naming the URL without its password.
        monkeypatch.setenv("FI_LLM_API_KEY", API_KEY)
        monkeypatch.setenv("FI_LLM_BASE_URL", with_credentials(server))
        both = materialize(instance, fi_home, "both", "", model)
        assert not both.success and "give one of them" in step_error(both)
        # 5. In resource config, which Dagster records in the run's job snapshot: refused before any run.
        with pytest.raises(ValueError, match="llm_base_url http://127.0.0.1:.* carries credentials") as info:
            resources(fi_home, with_credentials(server), model)
        assert URL_PASSWORD not in str(info.value) and USER not in str(info.value)
    assert (dagster_home / "history").exists() and list(fi_home.rglob("*.duckdb"))  # storage was written
    assert hits(fi_home) == [] and hits(dagster_home) == []
    assert URL_PASSWORD not in caplog.text and API_KEY not in caplog.text


def test_the_search_finds_a_planted_secret(tmp_path: Path) -> None:
    # The check above could pass by searching nothing: secrets planted the ways storage hides them are found.
    (tmp_path / "raw.bin").write_bytes(b"\x00\x01" + URL_PASSWORD.encode("utf-16-le") + b"\x00")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "log.txt").write_text(f"token {API_KEY}")
    with closing(sqlite3.connect(tmp_path / "runs.db")) as db:  # as Dagster stores a job snapshot
        db.execute("CREATE TABLE snapshots (body BLOB)")
        db.execute("INSERT INTO snapshots VALUES (?)", (zlib.compress(f"url {URL_PASSWORD}".encode()),))
        db.commit()
    with duckdb.connect(str(tmp_path / "w.duckdb")) as db:
        db.execute("CREATE TABLE t AS SELECT repeat('x', 5000) || ? AS v FROM range(2000)", [API_KEY])
    pd.DataFrame({"v": [URL_PASSWORD] * 5000}).to_parquet(tmp_path / "t.parquet", compression="gzip")
    found = hits(tmp_path)
    assert {Path(f.split(" holds ")[0]).name for f in found} == {
        "raw.bin",
        "log.txt",
        "runs.db",
        "w.duckdb",
        "t.parquet",
    }, found
