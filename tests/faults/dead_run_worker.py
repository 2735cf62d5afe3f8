"""A run as `make demo` executes one: in this process, tagged by `run_tags`, one step in the `lm` pool that
sleeps SLEEP_S seconds. tests/faults/test_dead_runs.py kills it or blocks it."""

import os
import time

import dagster as dg

from fi_assets.common import LM_POOL
from fi_assets.runs import run_tags


@dg.asset(pool=LM_POOL)
def sleepy() -> int:
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    return 1


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([sleepy], instance=instance, tags=run_tags(), raise_on_error=False)
    raise SystemExit(0 if result.success else 1)
