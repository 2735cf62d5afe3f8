"""One shard's `documents` and `document_descriptions` as `make demo` runs them: in this process, on the
instance DAGSTER_HOME names, the tiny profile's models, the data home FI_HOME and the document inbox
FI_INBOX. Argument: the shard key. tests/faults/test_shard_processes.py kills it, runs it in parallel and
fills its disk."""

import os
import sys

import dagster as dg

from fi_assets.common import document_shards
from fi_assets.definitions import build_definitions, build_resources
from fi_assets.runs import reap_dead_runs, run_tags

ASSETS = ["documents", "document_descriptions"]


def main(shard: str) -> int:
    resources = build_resources(
        "tiny", home=os.environ["FI_HOME"], document_folder=os.environ["FI_INBOX"], builtin_shards=0
    )
    with dg.DagsterInstance.get() as instance:
        reap_dead_runs(instance)  # as `make demo` does: a killed run's pool slot is freed first
        instance.add_dynamic_partitions(document_shards.name, [shard])
        result = dg.materialize(
            list(build_definitions(resources).assets or []),
            selection=ASSETS,
            partition_key=shard,
            instance=instance,
            resources=resources,
            tags=run_tags(),
            raise_on_error=False,
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
