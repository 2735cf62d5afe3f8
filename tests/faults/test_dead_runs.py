"""Issue 12: a run killed mid-step (SIGKILL, as an out-of-memory kill) must not block later runs of the `lm`
pool, and a run blocked on the pool must wait without spinning a core and stop on SIGTERM. Real processes,
a real instance (the project's dagster.yaml in a temporary DAGSTER_HOME), a one-step asset that sleeps."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from fi_assets.common import LM_POOL
from fi_assets.runs import PID_TAG, reap_dead_runs

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Create the SQLite storage here: two processes creating it at once race on its migrations.
    with dg.DagsterInstance.get() as inst:
        yield inst


def start_worker(sleep_s: float) -> subprocess.Popen:
    env = {**os.environ, "SLEEP_S": str(sleep_s), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.faults.dead_run_worker"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(what: str, check: Callable[[], object], timeout: float = 45.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def run_of(instance: dg.DagsterInstance, proc: subprocess.Popen) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PID_TAG: str(proc.pid)}))
    return runs[0] if runs else None


def slot_holders(instance: dg.DagsterInstance) -> set[str]:
    return {s.run_id for s in instance.event_log_storage.get_concurrency_info(LM_POOL).claimed_slots}


def pending_runs(instance: dg.DagsterInstance) -> set[str]:
    return {s.run_id for s in instance.event_log_storage.get_concurrency_info(LM_POOL).pending_steps}


def holding_worker(instance: dg.DagsterInstance) -> tuple[subprocess.Popen, str]:
    """A worker whose run holds the lm slot, sleeping."""
    proc = start_worker(300)
    run = wait_for("the first run", lambda: run_of(instance, proc))
    wait_for("its lm slot", lambda: run.run_id in slot_holders(instance))
    return proc, run.run_id


def test_killed_run_is_reaped_and_its_rerun_finishes(instance: dg.DagsterInstance, fault) -> None:
    proc, run_id = holding_worker(instance)
    assert reap_dead_runs(instance) == []  # alive: left alone
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # The problem: the dead run stays STARTED and keeps the only slot.
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert run_id in slot_holders(instance)

    start = time.monotonic()
    assert reap_dead_runs(instance) == [run_id]
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert run_id not in slot_holders(instance) | pending_runs(instance)
    assert (
        f"Run process {proc.pid}" in instance.get_records_for_run(run_id).records[-1].event_log_entry.message
    )

    rerun = start_worker(0)
    assert rerun.wait(60) == 0
    assert run_of(instance, rerun).status == dg.DagsterRunStatus.SUCCESS
    print(f"recovered: reap + rerun finished in {time.monotonic() - start:.1f}s")
    fault("recovered", bound_s=60)


def test_blocked_step_sleeps_and_stops_on_sigterm(instance: dg.DagsterInstance, fault) -> None:
    holder, _ = holding_worker(instance)
    blocked = start_worker(0)
    try:
        run = wait_for("the second run", lambda: run_of(instance, blocked))
        wait_for("its blocked step", lambda: run.run_id in pending_runs(instance))
        process = psutil.Process(blocked.pid)
        process.cpu_percent()
        time.sleep(3)
        cpu = process.cpu_percent()
        print(f"blocked step: {cpu:.0f}% of a core")
        assert cpu < 30, f"a step blocked on the pool spins: {cpu:.0f}% of a core"

        blocked.send_signal(signal.SIGTERM)
        assert blocked.wait(20) != 0
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        fault("stopped")
    finally:
        for proc in (blocked, holder):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
