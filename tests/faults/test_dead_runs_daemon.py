"""Issue 12, the UI's path for dead runs: under a real `dagster dev` with the project's dagster.yaml, a run
whose worker process is killed with SIGKILL mid-step (as an out-of-memory kill) is marked failed, the daemon's
run monitoring frees its `lm` pool slot, and the run that was waiting for the slot then finishes. A one-step
asset that sleeps (tests/faults/daemon_defs.py) holds the slot, so no model is loaded."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_ui import _free_port
from tests.integration.test_ui_browser import _stop

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 90
# Run monitoring polls every 30 s and frees an ended run's slots 30 s after its end (dagster.yaml).
SLOTS_FREED_S = 120
RECOVERED_S = 180  # kill → the waiting run done

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
POOL = """query($pool: String!) { instance { poolConfig { poolGranularity } concurrencyLimit(concurrencyKey: $pool) {
  claimedSlots { runId } pendingSteps { runId } } } }"""


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert "errors" not in reply, reply
    return reply["data"]


def wait_for(what: str, check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home, pids = tmp_path / "dagster_home", tmp_path / "pids"
    home.mkdir()
    pids.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FI_PIDS_DIR": str(pids), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "dagster_dev.log", "wb")  # noqa: SIM115 (closed after the process ends)
    exe = Path(sys.executable).with_name("dagster")
    defs = ROOT / "tests" / "faults" / "daemon_defs.py"
    proc = subprocess.Popen(
        [str(exe), "dev", "-h", "127.0.0.1", "-p", str(port), "-f", str(defs)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((tmp_path / "dagster_dev.log").read_text(errors="replace")[-3000:])
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=2)
            return True
        except OSError:
            return False

    try:
        wait_for("dagster dev to start", up, STARTUP_S)
        yield base, pids
    finally:
        _stop(proc)
        log.close()


def launch(base: str, sleep_s: float) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "daemon_defs.py",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["sleepy_ui"]}],
        },
        "runConfigData": {"ops": {"sleepy_ui": {"config": {"sleep_s": sleep_s}}}},
    }
    result = graphql(base, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def status(base: str, run_id: str) -> str:
    return graphql(base, RUN, {"id": run_id})["runOrError"]["status"]


def slot_holders(base: str) -> set[str]:
    limit = graphql(base, POOL, {"pool": "lm"})["instance"]["concurrencyLimit"]
    return {s["runId"] for s in limit["claimedSlots"]}


def test_a_killed_ui_run_is_failed_its_slot_freed_and_the_waiting_run_finishes(dev, fault):
    base, pids = dev
    first = launch(base, sleep_s=600)
    step_pid, worker_pid = map(
        int, wait_for("the first run's step to start", lambda: _read(pids / f"{first}.pids"), 90).split()
    )
    assert wait_for("the first run to hold the lm slot", lambda: first in slot_holders(base), 30)
    second = launch(base, sleep_s=1)
    time.sleep(10)
    assert not (pids / f"{second}.pids").exists(), "the second run's step ran beside the first: no pool limit"

    t = time.monotonic()
    for pid in (worker_pid, step_pid):  # the run worker first, as the kernel's OOM killer would pick it
        os.kill(pid, signal.SIGKILL)
    wait_for("the killed run to be marked failed", lambda: status(base, first) == "FAILURE", 60)
    wait_for("the killed run's slot to be freed", lambda: first not in slot_holders(base), SLOTS_FREED_S)
    assert wait_for("the waiting run to finish", lambda: status(base, second) in {"SUCCESS", "FAILURE"}, 120)
    assert status(base, second) == "SUCCESS"
    assert slot_holders(base) == set()
    seconds = time.monotonic() - t
    assert seconds < RECOVERED_S
    print(f"killed run failed, slot freed and the waiting run done in {seconds:.0f} s")
    fault("recovered", bound_s=RECOVERED_S)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
