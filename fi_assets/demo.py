"""`make demo`: materialize the whole graph on the embedded default, stage by stage, and print a summary.

Runs go to the persistent Dagster instance (DAGSTER_HOME), so `make ui` shows their history afterwards.
What reruns is what Dagster calls stale or missing (a new code version, which covers the settings an asset
reads, or an input with a new data version), plus any output whose file is gone from the warehouse; so an
interrupted demo finishes the rest without recomputing or duplicating what was done, and a changed setting
reruns exactly the assets it shapes and those whose inputs then changed. `--fresh` recomputes everything.
"""

import argparse
import json
import logging
import sys
import time

import dagster as dg

from fi_assets.automation import STAGES, asset_names, log_refusals, scan_shards
from fi_assets.checks import checks
from fi_assets.common import document_shards
from fi_assets.definitions import build_definitions, build_resources
from fi_assets.runs import reap_dead_runs, run_tags
from fi_assets.versioning import StaleAssets
from fi_resources.logic.audit import confusion
from fi_resources.logic.templates import template_skeleton

log = logging.getLogger("fi.demo")


def run_pipeline(resources: dict, instance: dg.DagsterInstance, fresh: bool = False) -> dict[str, float]:
    """Materialize every stage in order, each (asset, partition) only when it needs it; returns seconds per
    stage."""
    wh = resources["warehouse"].get()
    scan = scan_shards(resources["inbox"], resources["warehouse"])
    log_refusals(log, scan)
    shards = list(scan.shards)
    if not shards:
        raise SystemExit("no document shards: put JSONL/Parquet/CSV files in the document inbox")
    known = set(instance.get_dynamic_partitions(document_shards.name))
    instance.add_dynamic_partitions(document_shards.name, [s for s in shards if s not in known])
    assets = list(build_definitions(resources).assets or [])

    def needs_run(stale: StaleAssets, name: str, key: str | None) -> bool:
        return fresh or not wh.has_partition(name, key) or stale.needs_run(name, key)

    timings: dict[str, float] = {}
    for stage, stage_assets in STAGES:
        start = time.perf_counter()
        names = asset_names(stage_assets)
        for key in shards if stage_assets[0].partitions_def else [None]:
            where, done, ran = f"{stage}[{key}]" if key else stage, 0, False
            while True:
                # Re-ask after each run: an input's rerun may or may not give it a new data version.
                stale = StaleAssets(instance, assets)
                flags = [needs_run(stale, n, key) for n in names[done:]]
                if True not in flags:
                    break
                first = flags.index(True)
                length = (flags[first:] + [False]).index(False)
                block = names[done + first : done + first + length]
                done += first + length
                why = [] if fresh else stale.causes(block[0], key)
                log.info("%s: materializing %s (%s)", where, ", ".join(block), "; ".join(why) or "missing")
                result = dg.materialize(
                    [*assets, *checks],
                    selection=block,
                    partition_key=key,
                    instance=instance,
                    resources=resources,
                    tags={"fi/stage": stage, **run_tags()},
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                    raise_on_error=False,
                )
                if not result.success:
                    raise SystemExit(f"stage {stage} failed; see the run in the UI (make ui)")
                ran = True
            if not ran:
                log.info("%s: up to date, skipped", where)
        timings[stage] = round(time.perf_counter() - start, 1)
        log.info("stage %s done in %.1fs", stage, timings[stage])
    return timings


SUMMARY_SQL = {
    "queries": "SELECT count(*) FROM user_queries",
    "valid_templates": "SELECT count(DISTINCT template) FROM query_templates WHERE valid",
    "source_documents": "SELECT count(DISTINCT source_doc_id) FROM documents",
    "documents": "SELECT count(*) FROM documents",  # passages: every later stage's documents
    "matched_documents": "SELECT count(DISTINCT doc_id) FROM document_matches",
    "matches": "SELECT count(*) FROM document_matches",
    "instantiated_pairs": "SELECT count(*) FROM instantiated_pairs",
    "valid_pairs": "SELECT count(*) FROM instantiated_pairs WHERE status = 'ok'",
    "kept_pairs": "SELECT count(*) FROM judged_pairs WHERE kept",
    "kept_pairs_grounded_80": "SELECT count(*) FROM judged_pairs WHERE kept AND grounding_ratio >= 0.8",
    "corpus_pairs": "SELECT count(*) FROM training_corpus",
    "catalog_rows": "SELECT count(*) FROM catalog.materializations",
    "assets_in_catalog": "SELECT count(DISTINCT asset_key) FROM catalog.materializations",
}


def summarize(resources: dict) -> dict:
    wh = resources["warehouse"].get()
    out = {k: int(wh.query(sql).iloc[0, 0]) for k, sql in SUMMARY_SQL.items()}
    win = wh.query("SELECT avg(correct_wins::INT) FROM judge_validation WHERE split = 'test'").iloc[0, 0]
    out["judge_test_win_rate"] = round(float(win), 3)  # correct pair scored above its corrupted twin
    audit = wh.query("SELECT * FROM judge_audit WHERE split = 'heldout'").assign(all="all")
    row = confusion(audit, ["all"]).iloc[0].to_dict() if len(audit) else {}
    out["judge_audit_heldout"] = {k: row.get(k) for k in ("pairs", "sensible", "kept", "precision", "recall")}
    kept = wh.query("SELECT answer, template_id, template FROM judged_pairs WHERE kept")
    out["distinct_answers_per_kept"] = round(kept["answer"].nunique() / max(1, len(kept)), 3)
    # Templates of one question form ("What is <fi>a nation</fi>?", "What is <fi>a thing</fi>?") count apart in
    # the diversity rule; their form's share says how varied the kept questions really are.
    kept["form"] = kept["template"].map(template_skeleton)
    for name, column in (("template", "template_id"), ("question_form", "form")):
        top = float(kept[column].value_counts().iloc[0]) / len(kept) if len(kept) else 0.0
        out[f"largest_{name}_share_of_kept"] = round(top, 3)
    out["distinct_question_forms_kept"] = int(kept["form"].nunique())
    ev = wh.query("SELECT model, eval_set, loss FROM pretraining_eval")
    out["held_out_loss"] = {f"{r.model}/{r.eval_set}": round(r.loss, 4) for r in ev.itertuples()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="recompute every asset, even if up to date")
    parser.add_argument("--profile", default=None, help="embedded (default) or tiny")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    resources = build_resources(args.profile)
    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        # An earlier demo killed mid-run (e.g. out of memory) would otherwise hold the lm pool forever.
        reap_dead_runs(instance)
        timings = run_pipeline(resources, instance, fresh=args.fresh)
    summary = {
        "seconds_total": round(time.perf_counter() - start, 1),
        "stage_seconds": timings,
        **summarize(resources),
    }
    path = resources["warehouse"].get().home / "demo_summary.json"
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"summary written to {path}; warehouse: {resources['warehouse'].get().db_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
