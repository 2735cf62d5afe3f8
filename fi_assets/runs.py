"""Runs whose process died: find them, fail them and free their pool slots; and make a step blocked on a
pool wait without spinning a core.

In-process runs (`make demo`, tests) have no run worker that Dagster's daemon could health-check, so a run
killed with SIGKILL (an out-of-memory kill) stays STARTED and keeps its slot of the `lm` pool for good. We
tag such runs with the process id and host at launch; `reap_dead_runs` fails every unfinished run whose
process is gone from this host and frees its slots, through the instance's own storage. Runs launched from
the UI are covered by Dagster itself (see README, "Dead runs").
"""

import logging
import os
import socket
import time

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._utils.interrupts import check_captured_interrupt

log = logging.getLogger("fi.runs")

PID_TAG = "fi/pid"
HOST_TAG = "fi/host"
UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_tags() -> dict[str, str]:
    """Tags for a run executed in this process, so a later process can tell whether it died."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists. A reused id reads as alive: the safe way to be wrong."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def dead_pid(run: dg.DagsterRun) -> int | None:
    """The pid of the run's process if the run was tagged on this host and that process is gone."""
    pid, host = run.tags.get(PID_TAG, ""), run.tags.get(HOST_TAG)
    if host != socket.gethostname() or not pid.isdigit():
        return None  # not ours to judge: another host, or a run launched by the UI's daemon
    return None if pid_alive(int(pid)) else int(pid)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed each STARTING/STARTED run whose process died, free its pool slots; returns their ids."""
    reaped = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        pid = dead_pid(run)
        if pid is None:
            continue
        message = (
            f"Run process {pid} on {run.tags[HOST_TAG]} is gone (killed, e.g. out of memory); marked failed."
        )
        instance.report_run_failed(run, message)
        free_slots(instance, run.run_id)
        log.warning("run %s: %s", run.run_id, message)
        reaped.append(run.run_id)
    return reaped


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free the run's pool slots and pending claims; failing a run does not (its process would have)."""
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


# A blocked step: Dagster's in-process executor loops `claim -> sleep(interval_to_next_pending_claim_check)`,
# but in dagster 1.13 that interval is min(0, ...), never positive, so the loop spins a core; and it never
# looks at a captured SIGTERM, so the run cannot be stopped. This is the same method, returning the time
# until the next due claim check (at most a second, so a freed slot is seen promptly), and turning a
# captured interrupt into the interruption Dagster raises inside a step (the run is then failed/canceled).
MAX_BLOCKED_SLEEP_S = 1.0
MIN_BLOCKED_SLEEP_S = 0.05  # a claim check just due: retry soon, still without spinning


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    if not self.has_pending_claims():
        return 0.0
    if check_captured_interrupt():
        raise DagsterExecutionInterruptedError("interrupted while waiting for a pool slot")
    due = [at - time.time() for at in self._pending_timeouts.values()]
    return min(MAX_BLOCKED_SLEEP_S, max(MIN_BLOCKED_SLEEP_S, min(due, default=0.0)))


def patch_blocked_wait() -> None:
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check


patch_blocked_wait()


def main() -> int:
    """`make reap` (and the start of `make ui`): reap dead runs of the instance in DAGSTER_HOME."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)  # our lines, not the storage's migration chatter
    with dg.DagsterInstance.get() as instance:
        reaped = reap_dead_runs(instance)
    log.info("reaped %d dead run(s)", len(reaped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
