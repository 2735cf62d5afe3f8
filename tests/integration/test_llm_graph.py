"""The whole graph with the prompted (LLM) teacher on every job and the Flow-Judge rubric, against a real
OpenAI-compatible server started here (`python -m fi_resources.serve --request-log`): the paper profile's
routing, with a tiny random model standing in for the large teacher and judge (and as the students' base),
and small settings. The server's log must show every stage's prompt; each asset's metadata, its counts by
reason. A random model writes no valid JSON: every answer is dropped and counted, and nothing crashes.

The template bank comes from a released-layout JSONL (four rows), as a user with `finetemplates` would run it:
the prompted genericizer is still asked for its silver templates (and its drops are counted), but the bank
does not depend on a random model writing one."""

import json
import os

import dagster as dg
import pytest

from fi_assets.definitions import build_resources
from fi_assets.demo import run_pipeline
from fi_assets.judging import AUDIT_LABELS
from fi_resources.encoder import materialize_tiny_encoder
from fi_resources.lm import materialize_tiny_lm
from fi_resources.logic import llm_prompts as lp
from fi_resources.logic.flow_judge import flow_judge_prompt
from fi_resources.resources import ModelsResource
from tests.integration.test_backends import stop
from tests.integration.test_definitions import ISSUE_ASSETS
from tests.integration.test_llm_teacher import PARSER_REASONS, logged, serve

BANK = [
    {"template": "What is the capital of <fi>a country</fi>?",
     "compatible_document_description": "A document about a country and its cities."},
    {"template": "Who founded <fi>an organization</fi>?",
     "compatible_document_description": "A history of an organization."},
    {"template": "Where is <fi>a place</fi> located?",
     "compatible_document_description": "A description of a place and its geography."},
    {"template": "What is <fi>a topic</fi> known for?",
     "compatible_document_description": "An encyclopedia article about a topic."},
]  # fmt: skip
TEACHERS_LLM = dict(genericize="llm", describe="llm", compatibility="llm", instantiate="llm")
# Smaller than the tiny profile's sizes: every prompt is a request to the server.
SETTINGS = dict(
    max_queries=8,
    question_articles=2,
    silver_templates=6,
    docs_per_shard=2,
    silver_instantiations=4,
    embedder_top_k=2,
    judge_check_pairs=2,
    # A random encoder's matches rarely pass the asked-words and answer-shape filters (as in test_pipeline).
    min_asked_coverage=0.0,
    require_answer_shape=False,
)
AUDIT_ROWS = 4  # hand-labelled pairs per audit file the judge scores (each a 512-token judge request)


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory, model_cache):
    work = tmp_path_factory.mktemp("llm-graph")
    bank = work / "finetemplates.jsonl"
    bank.write_text("".join(json.dumps(row) + "\n" for row in BANK))
    audit = work / "audit"
    audit.mkdir()
    for labels in sorted(AUDIT_LABELS.glob("*.jsonl"))[:2]:
        (audit / labels.name).write_text("".join(labels.read_text().splitlines(True)[:AUDIT_ROWS]))
    lm = materialize_tiny_lm(model_cache / "tiny-llama")
    encoder = materialize_tiny_encoder(model_cache / "tiny-encoder")
    log = work / "requests.jsonl"
    proc, url = serve(lm, "stand-in", log)
    try:
        # The tiny profile's settings (the paper profile's are sized for a GPU), the paper's parts below.
        resources = build_resources(
            "tiny",
            home=str(work / "home"),
            released_bank_path=str(bank),
            audit_labels=str(audit),
            **TEACHERS_LLM,
            **SETTINGS,
        )
        resources["models"] = ModelsResource(
            profile="paper",
            warehouse=resources["warehouse"],
            llm_base_url=url,
            teacher_model="stand-in",
            judge_model="stand-in",
            student_base=str(lm),
            encoder_name=str(encoder),
        )
        instance = dg.DagsterInstance.ephemeral()
        # A random model's pairs are all dropped: the corpus is empty, and the steps that need one say so.
        with pytest.raises(SystemExit, match="stage pretraining failed"):
            run_pipeline(resources, instance)
    finally:
        stop(proc)
    return resources, instance, logged(log), step_failures(instance)


def step_failures(instance: dg.DagsterInstance) -> dict[str, str]:
    """Step name → the message of its failure, over every run of `instance`."""
    failures = {}
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            event = record.dagster_event
            failures[event.step_key] = event.step_failure_data.error.message
    return failures


NEED_A_CORPUS = {"corpus_export", "pretrained_checkpoint", "baseline_checkpoint", "pretraining_eval"}


def materialization_metadata(instance: dg.DagsterInstance, asset: str) -> list[dict]:
    """The metadata of every materialization of `asset` (one per partition), as plain values."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
    return [{k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()} for r in records]


def test_every_asset_materializes_with_the_llm_teacher_and_flow_judge(llm_run) -> None:
    resources, instance, _, failures = llm_run
    wh = resources["warehouse"].get()
    cataloged = set(wh.query("SELECT DISTINCT asset_key FROM catalog.materializations")["asset_key"])
    assert cataloged >= ISSUE_ASSETS - NEED_A_CORPUS, sorted(ISSUE_ASSETS - cataloged)
    assert wh.read_table("training_corpus").empty
    # Only the steps that need a corpus failed, each with a message that says why.
    assert set(failures) == NEED_A_CORPUS - {"pretraining_eval"}, failures
    assert all("the training corpus is empty" in message for message in failures.values()), failures
    names = resources["models"].parts().model_names()
    assert names["teacher"] == names["judge"] == "stand-in" and names["profile"] == "paper"
    bank = wh.read_table("query_templates")
    assert len(bank) == len(BANK) and (bank["prompt_version"] == "released").all()


def fixed_part(render, *argument_sets) -> str:
    """What a prompt function writes whatever its arguments: the instructions and the worked example."""
    return os.path.commonprefix([render(*args) for args in argument_sets])


PROMPTS = {  # job → (its prompt function, two sets of arguments)
    "genericize": (lp.genericize_prompt, ("Who wrote Dracula?",), ("How old is the Moon?",)),
    "describe": (lp.describe_prompt, ("Canberra", "A city."), ("Mars", "A planet.")),
    "compatibility": (lp.compatibility_prompt, ("Who is <fi>a person</fi>?", "A", "B"), ("Why <fi>x</fi>?", "C", "D")),
    "instantiate": (lp.instantiate_prompt, ("Who is <fi>a person</fi>?", "A", "B"), ("Why <fi>x</fi>?", "C", "D")),
    "judge": (flow_judge_prompt, ("Who wrote Dracula?", "Bram Stoker."), ("How old?", "Old.")),
}  # fmt: skip


def test_the_server_saw_every_stages_prompt(llm_run) -> None:
    resources, _, bodies, _ = llm_run
    by_job: dict[str, list[str]] = {}
    names = {lp.response_format(job)["json_schema"]["name"]: job for job in lp.PROMPT_VERSIONS}
    for body in bodies:
        if "prompt" in body:  # raw completions: written_questions' search-style questions (no chat)
            by_job.setdefault("write_questions", []).append(body["prompt"])
            continue
        job = names[body["response_format"]["json_schema"]["name"]] if "response_format" in body else "judge"
        by_job.setdefault(job, []).append(body["messages"][-1]["content"])
    assert set(by_job) == set(PROMPTS) | {"write_questions"}, sorted(by_job)
    for job, (render, *argument_sets) in PROMPTS.items():
        fixed = fixed_part(render, *argument_sets)
        assert len(fixed) > 200 and all(p.startswith(fixed) for p in by_job[job]), job
    # The genericize prompts are exactly those of the queries the silver sample holds.
    silver = resources["warehouse"].get().read_table("silver_templates")
    assert sorted(by_job["genericize"]) == sorted(lp.genericize_prompt(q) for q in silver["query"])
    print({job: len(prompts) for job, prompts in by_job.items()})


def test_every_dropped_output_is_counted_by_reason(llm_run) -> None:
    resources, instance, _, _ = llm_run
    counted = {}
    for asset in ("silver_templates", "document_descriptions", "embedder_pairs", "retrieval_eval",
                  "silver_instantiations"):  # fmt: skip
        metas = materialization_metadata(instance, asset)
        assert metas, asset
        drops = [m["teacher_drops"] for m in metas if "teacher_drops" in m]
        assert drops, (asset, sorted(metas[0]))
        counted[asset] = drops
    print(counted)
    wh = resources["warehouse"].get()
    silver = wh.read_table("silver_templates")
    assert len(silver) and silver["reason"].notna().all()
    assert set(silver["reason"]) <= PARSER_REASONS
    # The judge's answers, unparseable too, are scores with a reason, never a crash.
    judged = wh.read_table("judged_pairs")
    assert judged["judge_score"].between(1, 5).all()
