"""Jobs, the sensor that turns new shard files into partitions, and the schedule that reruns stale work."""

import logging
import os
import time

import dagster as dg

from fi_assets import corpus, documents, generation, judging, retrieval, templates
from fi_assets.common import document_shards
from fi_resources.inbox import InboxScan, scan_inbox
from fi_resources.resources import InboxSettingsResource, WarehouseResource
from fi_resources.sources import INPUT_SUFFIXES, write_builtin_shards

# The order in which the stages must run; `make demo` walks it, the UI can launch each stage's job.
STAGES: list[tuple[str, list[dg.AssetsDefinition]]] = [
    ("template_bank", [templates.written_questions, templates.user_queries, templates.silver_templates, templates.genericizer,
                       templates.query_templates]),
    ("describe_shards", [documents.documents, documents.document_descriptions]),
    ("retrieval", [retrieval.embedder_pairs, retrieval.retrieval_embedder, retrieval.chunk_labels,
                   retrieval.local_embedder, retrieval.template_index, retrieval.retrieval_eval]),
    ("match_shards", [retrieval.document_matches]),
    ("distill_instantiator", [generation.silver_instantiations, generation.round1_instantiator,
                              generation.round2_instantiations, generation.instantiator]),
    ("generate_shards", [generation.instantiated_pairs, generation.judged_pairs]),
    ("validate_judge", [judging.judge_check_set, judging.judge_validation, judging.judge_audit]),
    ("pretraining", [corpus.training_corpus, corpus.corpus_export, corpus.pretrained_checkpoint,
                     corpus.baseline_checkpoint, corpus.pretraining_eval]),
]  # fmt: skip


def asset_names(assets: list[dg.AssetsDefinition]) -> list[str]:
    return [a.key.to_user_string() for a in assets]


# Every partitioned asset, in stage order: the chain one shard goes through.
SHARD_ASSETS = [
    name
    for _, assets in STAGES
    for a, name in zip(assets, asset_names(assets), strict=True)
    if a.partitions_def
]

jobs = [dg.define_asset_job(f"{name}_job", selection=asset_names(assets)) for name, assets in STAGES]
shard_job = dg.define_asset_job("shard_job", selection=SHARD_ASSETS, partitions_def=document_shards)
jobs.append(shard_job)


def scan_shards(inbox: InboxSettingsResource, warehouse: WarehouseResource) -> InboxScan:
    """The document inbox's shards and refused entries (seeded with Wikipedia if it has no shard file)."""
    folder = inbox.folder("documents", warehouse.path)
    if inbox.builtin_shards and not any(p.suffix in INPUT_SUFFIXES for p in folder.iterdir()):
        write_builtin_shards(folder, inbox.builtin_shards, inbox.docs_per_shard)
    return scan_inbox(folder)


def shard_files(inbox: InboxSettingsResource, warehouse: WarehouseResource) -> dict[str, float]:
    """Shard key → file mtime for every shard file in the document inbox."""
    return scan_shards(inbox, warehouse).mtimes


def log_refusals(log: logging.Logger | dg.DagsterLogManager, scan: InboxScan) -> None:
    # Every tick: a refused file stays visible in each tick's log until the user fixes or removes it.
    for refusal in scan.refused:
        log.warning(f"document inbox: not a shard: {refusal}")


def refusal_summary(scan: InboxScan, limit: int = 5) -> str:
    """The refused entries in one line (the first `limit`), for a tick's skip reason."""
    if not scan.refused:
        return ""
    shown = "; ".join(str(r) for r in scan.refused[:limit])
    more = f"; and {len(scan.refused) - limit} more (see the tick's log)" if len(scan.refused) > limit else ""
    return f"{len(scan.refused)} inbox file(s) refused: {shown}{more}"


def _downstream_ready(warehouse: WarehouseResource) -> bool:
    wh = warehouse.get()
    return all(wh.has_partition(a, None) for a in ("template_index", "instantiator", "local_embedder"))


@dg.sensor(job=shard_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_shard_sensor(
    context: dg.SensorEvaluationContext, inbox: InboxSettingsResource, warehouse: WarehouseResource
) -> dg.SensorResult:
    """A new file in the document inbox becomes a partition and gets a run (the whole shard chain once the
    template index and the instantiator exist, otherwise documents and descriptions)."""
    scan = scan_shards(inbox, warehouse)
    log_refusals(context.log, scan)
    known = set(context.instance.get_dynamic_partitions(document_shards.name))
    new = [k for k in scan.shards if k not in known]
    if not new:
        return dg.SensorResult(
            skip_reason="; ".join(filter(None, ["no new shard files", refusal_summary(scan)]))
        )
    selection = SHARD_ASSETS if _downstream_ready(warehouse) else SHARD_ASSETS[:2]
    return dg.SensorResult(
        dynamic_partitions_requests=[document_shards.build_add_request(new)],
        run_requests=[
            dg.RunRequest(partition_key=k, asset_selection=[dg.AssetKey(a) for a in selection]) for k in new
        ],
    )


@dg.schedule(job=shard_job, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING)
def stale_shard_schedule(
    context: dg.ScheduleEvaluationContext, inbox: InboxSettingsResource, warehouse: WarehouseResource
) -> list[dg.RunRequest] | dg.SkipReason:
    """Hourly: rerun each shard whose file changed since its documents were materialized, or whose chain
    never finished (a crash mid-run leaves the finished partitions and reruns only the rest)."""
    scan = scan_shards(inbox, warehouse)
    log_refusals(context.log, scan)
    files = scan.mtimes
    known = set(context.instance.get_dynamic_partitions(document_shards.name))
    wh = warehouse.get()
    ready = _downstream_ready(warehouse)
    requests = []
    # New files are the sensor's: the schedule only reruns shards that are already partitions.
    for shard, mtime in ((s, m) for s, m in files.items() if s in known):
        docs_path = wh.partition_path("documents", shard)
        changed = not docs_path.exists() or os.path.getmtime(docs_path) < mtime
        unfinished = ready and not wh.has_partition("judged_pairs", shard)
        if changed or unfinished:
            selection = SHARD_ASSETS if ready else SHARD_ASSETS[:2]
            requests.append(
                dg.RunRequest(
                    # One request per shard version per hour: a tick that fires twice does not double up.
                    run_key=f"{shard}:{mtime}:{int(time.time() // 3600)}",
                    partition_key=shard,
                    asset_selection=[dg.AssetKey(a) for a in selection],
                )
            )
    return requests or dg.SkipReason("every shard is up to date")
