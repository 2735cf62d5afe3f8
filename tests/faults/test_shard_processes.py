"""Issue 12: real shard runs (`documents` + `document_descriptions`, the tiny profile's models) in real
processes sharing one data home and one Dagster instance: a run SIGKILLed mid-describe and rerun, four
shards in four processes at once, and a data home that fills up or turns read-only (a small tmpfs, mounted
by the test; skipped where it cannot mount). After each: every document described once, no duplicate, the
catalog agrees with the Parquet files, DuckDB and SQLite pass their checks, no pool slot held."""

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from fi_assets.automation import scan_shards
from fi_assets.common import LM_POOL
from fi_resources.resources import InboxSettingsResource, WarehouseResource
from tests.faults.conftest import GOOD_TEXT, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "tests.faults.shard_run_worker"]


class Setup:
    def __init__(self, tmp: Path, home: Path, instance: dg.DagsterInstance, env: dict):
        self.tmp, self.home, self.instance, self.env = tmp, home, instance, env
        self.inbox = Path(env["FI_INBOX"])

    def write_shard(self, name: str, n: int) -> None:
        text = f"of the {name} ledger. {GOOD_TEXT}"
        write_jsonl(
            self.inbox / f"{name}.jsonl",
            [{"title": f"{name} {i}", "text": f"Entry {i} {text}"} for i in range(n)],
        )

    def shard_keys(self) -> list[str]:
        inbox = InboxSettingsResource(document_folder=str(self.inbox), builtin_shards=0)
        return sorted(scan_shards(inbox, WarehouseResource(home=str(self.home))).shards)

    def start(self, shard: str, tag: str) -> subprocess.Popen:
        log = (self.tmp / f"{tag}.log").open("w")
        return subprocess.Popen(
            [*WORKER, shard], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def run(self, shard: str, tag: str, timeout: float = 300) -> int:
        return self.start(shard, tag).wait(timeout)

    def log(self, tag: str) -> str:
        return (self.tmp / f"{tag}.log").read_text()


def make_setup(tmp: Path, home: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> Iterator[Setup]:
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home)
    (tmp / "inbox").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGSTER_HOME": str(dagster_home),
        "FI_HOME": str(home),
        "FI_INBOX": str(tmp / "inbox"),
        "FI_MODEL_CACHE": str(model_cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    # Create the SQLite storage here: processes creating it at once race on its migrations.
    with dg.DagsterInstance.get() as instance:
        yield Setup(tmp, home, instance, env)


@pytest.fixture
def setup(tmp_path, monkeypatch, model_cache) -> Iterator[Setup]:
    yield from make_setup(tmp_path, tmp_path / "home", monkeypatch, model_cache)


@pytest.fixture
def disk(tmp_path, monkeypatch, model_cache) -> Iterator[tuple[Setup, Path]]:
    """A data home on its own 32 MB tmpfs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(
            f"cannot mount a tmpfs to fill (needs root with CAP_SYS_ADMIN): {done.stderr.decode().strip()}"
        )
    try:
        yield from ((s, mount) for s in make_setup(tmp_path, mount / "home", monkeypatch, model_cache))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def cached_responses(home: Path) -> int:
    path = home / "cache" / "responses.sqlite"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no table yet
        return 0


def check_storage(s: Setup, docs_per_shard: dict[str, int]) -> pd.DataFrame:
    """Every shard's documents described exactly once; the catalog's latest row of each partition names its
    Parquet file with its row count; SQLite and DuckDB intact; every run finished, no pool slot held."""
    with contextlib.closing(sqlite3.connect(s.home / "cache" / "responses.sqlite")) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with duckdb.connect(str(s.home / "warehouse.duckdb"), read_only=True) as con:
        catalog = con.execute(
            "SELECT asset_key, partition_key, row_count, table_path FROM catalog.materializations "
            "ORDER BY materialized_at"
        ).df()
    described = []
    for shard, n in docs_per_shard.items():
        for asset in ("documents", "document_descriptions"):
            rows = catalog[(catalog.asset_key == asset) & (catalog.partition_key == shard)]
            assert len(rows), (asset, shard)
            frame = pd.read_parquet(rows.iloc[-1].table_path)
            assert len(frame) == rows.iloc[-1].row_count == n, (asset, shard)
        described.append(frame)
    assert not list(s.home.rglob("*.tmp")), "temp files left behind"
    unfinished = s.instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert not unfinished
    assert not s.instance.event_log_storage.get_concurrency_info(LM_POOL).claimed_slots
    out = pd.concat(described, ignore_index=True)
    assert not out.duplicated(["doc_id"]).any()
    return out


def test_a_shard_run_killed_mid_describe_reruns_to_completion(setup: Setup, fault) -> None:
    setup.write_shard("ledger", 400)
    (shard,) = setup.shard_keys()
    run = setup.start(shard, "killed")
    deadline = time.monotonic() + 240
    while cached_responses(setup.home) < 64 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before it could be killed: make the shard longer"
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    answered = cached_responses(setup.home)
    assert 64 <= answered < 400

    start = time.monotonic()
    assert setup.run(shard, "rerun") == 0, setup.log("rerun")[-3000:]
    described = check_storage(setup, {shard: 400})
    assert cached_responses(setup.home) == 400  # the killed run's answers reused, each prompt stored once
    runs = setup.instance.get_runs()
    assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]
    print(f"killed with {answered} answers cached; reaped and rerun in {time.monotonic() - start:.0f}s")
    fault("recovered", rows_in=400, kept=described["doc_id"], bound_s=300)


def test_four_shards_in_four_processes_at_once(setup: Setup, fault) -> None:
    sizes = {"north": 30, "south": 31, "east": 32, "west": 33}
    for name, n in sizes.items():
        setup.write_shard(name, n)
    keys = setup.shard_keys()
    procs = [setup.start(key, key) for key in keys]
    codes = [p.wait(420) for p in procs]
    assert codes == [0, 0, 0, 0], [setup.log(k)[-2000:] for k in keys]
    described = check_storage(setup, {key: sizes[key.split(".")[0]] for key in keys})
    fault("accepted", rows_in=sum(sizes.values()), kept=described["doc_id"], bound_s=420)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()
    return filler


@pytest.mark.parametrize("fault_kind", ["full", "read-only"])
def test_a_full_or_read_only_data_home_fails_clearly_and_a_rerun_finishes(disk, fault_kind, fault) -> None:
    s, mount = disk
    s.write_shard("first", 40)
    (first,) = s.shard_keys()
    assert s.run(first, "first") == 0, s.log("first")[-3000:]
    s.write_shard("second", 40)
    second = next(k for k in s.shard_keys() if k != first)
    before = {p: p.read_bytes() for p in s.home.rglob("*.parquet")}

    if fault_kind == "full":
        filler = fill(mount)
        expected = "No space left on device"
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        expected = "Read-only file system"
    assert s.run(second, fault_kind) != 0
    log = s.log(fault_kind)
    assert expected in log, log[-3000:]
    assert f"could not write {s.home}" in log or f"'{s.home}" in log, log[-3000:]  # names the file
    if fault_kind == "full":
        filler.unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
    assert {p: p.read_bytes() for p in before} == before  # the finished shard is untouched

    assert s.run(second, "after") == 0, s.log("after")[-3000:]
    described = check_storage(s, {first: 40, second: 40})
    fault("clear error", rows_in=80, kept=described["doc_id"], bound_s=300)
