"""Definitions for `dagster dev` in tests/faults/test_dead_runs_daemon.py: one asset in the `lm` pool that
writes its step's and its run worker's process ids to FI_PIDS_DIR, then sleeps `sleep_s`."""

import os
import time
from pathlib import Path

import dagster as dg

from fi_assets.common import LM_POOL


class SleepConfig(dg.Config):
    sleep_s: float = 0.0


@dg.asset(pool=LM_POOL)
def sleepy_ui(context: dg.AssetExecutionContext, config: SleepConfig) -> int:
    # The default (multiprocess) executor runs the step in a child of the run worker, as the project's UI runs.
    pids = Path(os.environ["FI_PIDS_DIR"]) / f"{context.run_id}.pids"
    pids.write_text(f"{os.getpid()} {os.getppid()}")
    time.sleep(config.sleep_s)
    return 1


defs = dg.Definitions(assets=[sleepy_ui])
