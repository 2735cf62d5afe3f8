"""End-to-end materializations of the whole graph (real Dagster runs, real DuckDB file)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fi_assets.automation import new_shard_sensor
from fi_assets.definitions import all_assets, build_resources
from fi_assets.demo import SUMMARY_SQL, run_pipeline
from fi_resources.sources import source_documents
from tests.integration.test_definitions import ISSUE_ASSETS

# Small sizes so the real embedded models finish in a few minutes on 2 cores.
SMALL = dict(
    max_queries=48,
    question_articles=6,
    silver_templates=48,
    # 6 passages and a few dozen templates: the asked-words and answer-shape filters would leave almost
    # nothing to plumb through (the demo measures them at full size).
    min_asked_coverage=0.0,
    require_answer_shape=False,
    # At this size the template-aware judge keeps nothing (measured: scores 1-3 only), and the corpus, export
    # and checkpoints downstream need pairs; quality is measured on the demo and the audit set, not here.
    keep_score=3,
    genericizer_epochs=3,
    student_lr=3e-4,  # few examples: fewer, larger steps
    builtin_shards=2,
    docs_per_shard=3,
    passage_chars=700,
    silver_instantiations=16,
    instantiator_epochs=3,
    embedder_top_k=3,
    judge_check_pairs=6,  # the judge check set: 6 correct pairs per source (the demo uses 16)
    pretrain_hidden=32,
    pretrain_layers=1,
    pretrain_epochs=1,
)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory, model_cache):
    home = tmp_path_factory.mktemp("fi-embedded")
    resources = build_resources("embedded", home=str(home), **SMALL)
    instance = dg.DagsterInstance.ephemeral()
    timings = run_pipeline(resources, instance)
    return resources, instance, timings


def test_every_asset_is_materialized_and_cataloged(embedded_run):
    resources, _, _ = embedded_run
    wh = resources["warehouse"].get()
    cataloged = set(wh.query("SELECT DISTINCT asset_key FROM catalog.materializations")["asset_key"])
    assert cataloged >= ISSUE_ASSETS
    rows = wh.query("SELECT * FROM catalog.materializations")
    assert rows["run_id"].notna().all() and rows["data_version"].str.len().gt(0).all()
    models = rows[rows["artifact_path"].notna()]
    assert {"genericizer", "retrieval_embedder", "template_index", "instantiator"} <= set(models["asset_key"])
    assert all(Path(p).is_dir() for p in models["artifact_path"])
    counts = {k: int(wh.query(sql).iloc[0, 0]) for k, sql in SUMMARY_SQL.items()}
    # Real models on real text: the student genericizer must produce valid templates, and retrieval matches.
    assert counts["valid_templates"] >= 5, counts
    assert counts["matched_documents"] >= 1, counts
    assert counts["instantiated_pairs"] == counts["matches"]


def test_pairs_carry_lineage_back_to_document_and_template(embedded_run):
    resources, _, _ = embedded_run
    wh = resources["warehouse"].get()
    joined = wh.query(
        """
        SELECT p.pair_id, p.answer, p.excerpt_spans, p.passage_spans, p.grounding_ratio, p.source_doc_id,
               d.source_doc_id AS doc_source_id, d.text AS passage_text, d.offset, t.template, t.query
        FROM instantiated_pairs p
        JOIN documents d USING (doc_id)
        JOIN query_templates t USING (template_id)
        WHERE p.status = 'ok'
        """
    )
    # The source texts, read again from the shard files: spans must land there, not just in the passage.
    sources = shard_source_texts(resources)
    documents = wh.read_table("documents")
    for d in documents.itertuples():
        assert sources[d.source_doc_id][d.offset : d.offset + len(d.text)] == d.text
    statuses = wh.query("SELECT status, count(*) n FROM instantiated_pairs GROUP BY 1")
    assert set(statuses["status"]) <= {
        "ok", "low_grounding", "refused_null", "unknown_excerpt", "ambiguous_excerpt", "unbalanced_excerpt_tags",
        "markup_in_instruction",
        "empty_excerpt", "empty_answer", "missing_instruction", "missing_answer", "empty_output",
    }  # fmt: skip
    for row in joined.itertuples():
        assert row.grounding_ratio >= 0.8 and row.source_doc_id == row.doc_source_id
        source = sources[row.source_doc_id]
        spans, local = json.loads(row.excerpt_spans), json.loads(row.passage_spans)
        assert len(spans) == len(local) >= 1
        for (start, end), (local_start, local_end) in zip(spans, local, strict=True):
            assert source[start:end] in row.answer  # the excerpt really is source-document text
            assert source[start:end] == row.passage_text[local_start:local_end]
            assert start - row.offset == local_start
    judged = wh.query("SELECT * FROM judged_pairs")
    assert judged["judge_score"].between(1, 5).all()
    passed = judged["judge_score"] >= SMALL["keep_score"]
    # Kept = passed the score and not dropped for diversity (one pair per answer, a per-template cap).
    assert (judged["kept"] == (passed & ~judged["diversity_dropped"])).all()
    assert judged.loc[judged["kept"], "answer"].is_unique
    corpus = wh.query("SELECT * FROM training_corpus")
    assert corpus["text"].str.startswith("Instruction: ").all()
    assert set(corpus["source_doc_id"]) <= set(documents["source_doc_id"])
    assert set(corpus["pair_id"]) <= set(judged[judged["kept"]]["pair_id"])


def shard_source_texts(resources) -> dict[str, str]:
    """source_doc_id → the full text of that row of its shard file in the inbox."""
    inbox = resources["inbox"].folder("documents", resources["warehouse"].home)
    return {d.source_doc_id: d.text for path in sorted(inbox.glob("*.jsonl")) for d in source_documents(path)}


def test_documents_are_passages_of_their_sources(embedded_run):
    resources, _, _ = embedded_run
    documents = resources["warehouse"].get().read_table("documents")
    assert documents["doc_id"].is_unique
    per_source = documents.groupby("source_doc_id")["passage"]
    assert per_source.size().max() == 2 and per_source.min().eq(0).all()  # the lead plus one sampled
    assert documents["text"].str.len().max() <= SMALL["passage_chars"]
    assert (documents["offset"] > 0).any()  # passages past the lead reach the pipeline


def test_checkpoints_and_eval(embedded_run):
    resources, _, _ = embedded_run
    wh = resources["warehouse"].get()
    ev = wh.query("SELECT * FROM pretraining_eval")
    assert set(ev["model"]) == {"fineinstructions", "raw_documents"}
    assert ev["loss"].notna().all()
    fi = wh.read_table("pretrained_checkpoint").iloc[0]
    base = wh.read_table("baseline_checkpoint").iloc[0]
    assert fi["corpus_tokens"] == base["corpus_tokens"]  # token-for-token comparison


def test_rerun_skips_finished_work_and_finishes_a_lost_partition(embedded_run):
    resources, instance, _ = embedded_run
    wh = resources["warehouse"].get()
    before = wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0]
    run_pipeline(resources, instance)  # nothing is stale: no new materializations
    assert wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0] == before
    # Simulate a crash that lost one shard's judged pairs: the rerun redoes that partition only.
    wh.partition_path("judged_pairs", "wikipedia-001").unlink()
    n_pairs = len(wh.read_table("instantiated_pairs"))
    run_pipeline(resources, instance)
    redone = wh.query(
        "SELECT asset_key, partition_key FROM catalog.materializations ORDER BY materialized_at DESC LIMIT 20"
    )
    new = redone.head(int(wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0] - before))
    assert ("judged_pairs", "wikipedia-001") in set(zip(new["asset_key"], new["partition_key"], strict=False))
    assert "instantiated_pairs" not in set(new["asset_key"])
    judged = wh.read_table("judged_pairs")
    assert judged["pair_id"].is_unique
    assert len(wh.read_table("instantiated_pairs")) == n_pairs


# Runs before the tests below: their instances replace Dagster's process-wide defs-state storage, which a
# later materialize on this module's instance would then find closed.
def test_changing_one_setting_reruns_exactly_the_assets_it_shapes(embedded_run):
    from fi_assets.definitions import build_definitions
    from fi_assets.versioning import StaleAssets

    resources, instance, _ = embedded_run
    home = resources["warehouse"].home
    wh = resources["warehouse"].get()
    before = wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0]
    changed = build_resources("embedded", home=home, **{**SMALL, "pretrain_epochs": 2})
    stale = StaleAssets(instance, list(build_definitions(changed).assets or []))
    unpartitioned = [a.key.to_user_string() for a in all_assets if not a.partitions_def]
    # The two checkpoints read pretrain_settings; nothing else does, and nothing else is stale yet.
    assert {a for a in unpartitioned if stale.needs_run(a)} == {
        "pretrained_checkpoint",
        "baseline_checkpoint",
    }
    assert stale.causes("pretrained_checkpoint") == ["pretrained_checkpoint has a new code version"]
    assert not any(
        stale.needs_run("judged_pairs", s) for s in instance.get_dynamic_partitions("document_shards")
    )
    run_pipeline(changed, instance)
    rows = wh.query(
        "SELECT asset_key FROM catalog.materializations ORDER BY materialized_at DESC LIMIT ?",
        [int(wh.query("SELECT count(*) FROM catalog.materializations").iloc[0, 0] - before)],
    )
    # ...and their new weights make the evaluation, their only descendant, rerun too.
    assert sorted(rows["asset_key"]) == ["baseline_checkpoint", "pretrained_checkpoint", "pretraining_eval"]
    after = StaleAssets(instance, list(build_definitions(changed).assets or []))
    assert not any(after.needs_run(a) for a in unpartitioned)


def test_tiny_models_garbage_output_is_rejected_with_reasons_not_crashes(tmp_path, model_cache):
    resources = build_resources("tiny", home=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    # With nothing to learn from, the students are saved untrained (said by their checks) and the graph
    # runs on until the empty training corpus stops it with a clear error.
    with pytest.raises(SystemExit, match="stage pretraining failed"):
        run_pipeline(resources, instance)
    wh = resources["warehouse"].get()
    bank = wh.read_table("query_templates")
    assert len(bank) == 24 and not bank["valid"].any()  # random weights write no valid template...
    assert bank["reason"].notna().all() and "ok" not in set(bank["reason"])
    assert wh.read_table("document_matches").empty  # ...so nothing downstream is invented
    assert wh.read_table("retrieval_embedder").iloc[0]["trained"] == False  # noqa: E712
    assert wh.read_table("judged_pairs").empty and wh.read_table("training_corpus").empty
    failure = instance.get_runs(limit=1)[0]
    assert failure.status == dg.DagsterRunStatus.FAILURE
    failed = [
        e for e in instance.all_logs(failure.run_id) if e.is_dagster_event and e.dagster_event.is_step_failure
    ]
    assert failed and "the training corpus is empty" in str(failed[0].dagster_event.event_specific_data.error)


def test_sensor_turns_new_shard_files_into_partitions(tmp_path, model_cache):
    resources = build_resources("tiny", home=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    inbox = resources["inbox"].folder("documents", str(tmp_path))
    pd.DataFrame({"title": ["T"], "text": ["Some text. " * 50]}).to_parquet(inbox / "mine.parquet")
    ctx = dg.build_sensor_context(
        instance=instance, resources={k: resources[k] for k in ("inbox", "warehouse")}
    )
    result = new_shard_sensor(ctx)
    added = result.dynamic_partitions_requests[0].partition_keys
    assert list(added) == ["mine"]  # the inbox had a file, so no built-in shards were written
    assert [r.partition_key for r in result.run_requests] == ["mine"]
    instance.add_dynamic_partitions("document_shards", list(added))
    assert new_shard_sensor(ctx).skip_reason


def test_malformed_shard_fails_clearly_and_keeps_other_partitions(tmp_path, model_cache):
    resources = build_resources("tiny", home=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    inbox = resources["inbox"].folder("documents", str(tmp_path))
    (inbox / "good.jsonl").write_text(
        json.dumps({"title": "G", "text": "A sentence that is long enough. " * 20}) + "\n"
    )
    (inbox / "bad.jsonl").write_text('{"title": "B", "text": "fine"}\n{not json\n')
    instance.add_dynamic_partitions("document_shards", ["good", "bad"])
    ok = dg.materialize(
        all_assets, selection=["documents"], partition_key="good", instance=instance, resources=resources
    )
    assert ok.success
    bad = dg.materialize(
        all_assets,
        selection=["documents"],
        partition_key="bad",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.is_step_failure)
    assert "bad.jsonl: line 2 is not valid JSON" in str(failure.step_failure_data.error.message)
    wh = resources["warehouse"].get()
    good = wh.read_table("documents", ["good"])
    assert good["source_doc_id"].nunique() == 1 and good["title"].eq("G").all()
    assert not wh.has_partition("documents", "bad")


def test_schedule_reruns_only_changed_or_unfinished_shards(tmp_path, model_cache):
    resources = build_resources("tiny", home=str(tmp_path))
    with dg.instance_for_test() as instance:  # schedules need an instance they can re-open by reference
        _check_schedule(resources, instance, resources["inbox"].folder("documents", str(tmp_path)))


def _check_schedule(resources, instance, inbox):
    import os
    import time

    from fi_assets.automation import stale_shard_schedule

    for name in ("a", "b", "new"):
        (inbox / f"{name}.jsonl").write_text(
            json.dumps({"title": name, "text": "Long enough text. " * 30}) + "\n"
        )
    instance.add_dynamic_partitions("document_shards", ["a", "b"])
    for shard in ("a", "b"):
        assert dg.materialize(
            all_assets, selection=["documents"], partition_key=shard, instance=instance, resources=resources
        ).success
    # Entered, so the instance it opens by reference is closed after: left open, it stays Dagster's current
    # state storage and later tests' definitions read a deleted folder.
    with dg.build_schedule_context(
        instance=instance, resources={k: resources[k] for k in ("inbox", "warehouse")}
    ) as ctx:
        assert isinstance(stale_shard_schedule(ctx), dg.SkipReason)  # "new" is the sensor's; a, b are fresh
        later = time.time() + 10
        os.utime(inbox / "b.jsonl", (later, later))  # the user replaced shard b's file
        requests = stale_shard_schedule(ctx)
    assert [r.partition_key for r in requests] == ["b"]
