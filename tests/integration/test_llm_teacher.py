"""The prompted teacher against the bundled OpenAI-compatible server (`python -m fi_resources.serve`, a real
subprocess on 127.0.0.1): every job's prompt reaches the server with its JSON schema, and every output is
either parsed or dropped and counted by reason (the embedded 135M model fails most prompts: expected). Plus
the structured-output fallback against a server that refuses `response_format`, and the cache key."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from fi_resources.backends import HTTPBackend, HTTPConfig
from fi_resources.cache import CachedBackend, ResponseCache
from fi_resources.llm_teacher import PromptedTeacher
from fi_resources.lm import materialize_smollm2, materialize_tiny_lm
from fi_resources.logic import llm_prompts as lp
from fi_resources.settings import TemplateBankSettings
from fi_resources.stages import templates as templates_stage
from tests.integration.test_backends import free_port, stop, wait_listening

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["What is the capital of Australia?", "Who wrote the novel Dracula?"]
TITLE = "Canberra"
DOC = (
    "Canberra is the capital city of Australia. Founded following the federation of the colonies of "
    "Australia as the seat of government for the new nation, it is the country's largest inland city."
)
TEMPLATE = "What is the capital of <fi>a country</fi>?"
# Reasons a parser may give (the template and excerpt grammars add their own snake_case codes).
PARSER_REASONS = {"ok", "malformed_json", "off_schema", "null", "empty", "refusal", "injection",
                  "copied_example", "bad_length", "off_template", "markup_in_instruction", "no_excerpt",
                  "unbalanced_tags", "unknown_excerpt", "ambiguous_excerpt", "empty_excerpt",
                  "malformed_excerpt_tag", "empty_answer", "nested_tags", "bad_markup", "no_slots",
                  "empty_slot", "slot_too_long", "too_long", "bad_template"}  # fmt: skip


def serve(model: Path, name: str, log: Path, *flags: str):
    port = free_port()
    cmd = [sys.executable, "-m", "fi_resources.serve", "--model", str(model), "--name", name,
           "--port", str(port), "--request-log", str(log), *flags]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_listening(proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def logged(log: Path) -> list[dict]:
    return [json.loads(line)["body"] for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def smollm2_server(model_cache, tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "requests.jsonl"
    proc, url = serve(
        materialize_smollm2(model_cache / "smollm2-135m-instruct"), "smollm2", log, "--batch-wait-ms", "300"
    )
    yield url, log
    stop(proc)


def test_every_job_prompted_and_every_output_parsed_or_counted(smollm2_server) -> None:
    url, log = smollm2_server
    backend = HTTPBackend(HTTPConfig(url, "smollm2", endpoint="chat", concurrency=4))
    # Short answers keep the test well under a minute on 2 cores; a cut-off JSON object is malformed_json.
    teacher = PromptedTeacher(backend, max_new_tokens=dict.fromkeys(lp.PROMPT_VERSIONS, 40))
    # All jobs at once: the server decodes the five prompts as one batch (a 2-core machine does one a time).
    with ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(teacher.genericize, QUERIES),
            pool.submit(teacher.describe_documents, [TITLE], [DOC]),
            pool.submit(teacher.label_compatibility, TEMPLATE, TITLE, DOC),
            pool.submit(teacher.instantiate, TEMPLATE, TITLE, DOC),
        ]
        templates, descriptions, label, inst = (j.result() for j in jobs)

    # The server saw each job's prompt, as a chat message, with that job's schema.
    bodies = logged(log)
    expected = [
        ("genericize", lp.genericize_prompt(QUERIES[0])),
        ("genericize", lp.genericize_prompt(QUERIES[1])),
        ("describe", lp.describe_prompt(TITLE, DOC)),
        ("compatibility", lp.compatibility_prompt(TEMPLATE, TITLE, DOC)),
        ("instantiate", lp.instantiate_prompt(TEMPLATE, TITLE, DOC)),
    ]
    sent = sorted((b["response_format"]["json_schema"]["name"], b["messages"][0]["content"]) for b in bodies)
    assert sent == sorted((lp.response_format(job)["json_schema"]["name"], p) for job, p in expected)

    # Every output is parsed or counted: one outcome per item, each a known reason.
    assert {job: sum(c.values()) for job, c in teacher.outcomes.items()} == {
        "genericize": 2, "describe": 1, "compatibility": 1, "instantiate": 1}  # fmt: skip
    for counts in teacher.outcomes.values():
        assert set(counts) <= PARSER_REASONS, counts
    for t in templates:
        assert (t.template is None) == (t.reason is not None)
    assert len(descriptions) == 1 and descriptions[0]
    assert label.reason in PARSER_REASONS | {"low_score"}
    assert inst.reason in PARSER_REASONS
    assert (inst.instruction is None) == (inst.reason != "ok")
    drops = teacher.drop_counts()
    assert sum(drops.values()) == sum(n for c in teacher.outcomes.values() for r, n in c.items() if r != "ok")
    print("outcomes:", {job: dict(c) for job, c in teacher.outcomes.items()})


@pytest.fixture(scope="module")
def tiny_lm(model_cache) -> Path:
    return materialize_tiny_lm(model_cache / "tiny-llama")


def test_refused_response_format_falls_back_once_and_remembers(tiny_lm, tmp_path) -> None:
    log = tmp_path / "requests.jsonl"
    proc, url = serve(tiny_lm, "tiny", log, "--refuse-response-format")
    try:
        backend = HTTPBackend(HTTPConfig(url, "tiny", endpoint="chat", concurrency=1))
        teacher = PromptedTeacher(backend, max_new_tokens=dict.fromkeys(lp.PROMPT_VERSIONS, 8))
        queries = pd.DataFrame(
            {"query_id": ["a", "b", "c"], "query": QUERIES + ["Where is Mount Kilimanjaro?"]}
        )
        # Through the stage, as the silver_templates asset runs it: its stats are the asset's metadata.
        result = templates_stage.silver_templates(queries, teacher, TemplateBankSettings(silver_templates=3))
    finally:
        stop(proc)
    assert len(result.value) == 3 and sum(teacher.outcomes["genericize"].values()) == 3
    assert backend.stats.schema_fallbacks == 1 and backend.schema_unsupported
    stats = result.stats
    assert stats["schema_fallbacks"] == 1
    drops = stats["teacher_drops"].counts
    assert sum(drops.values()) == 3 - stats["valid_templates"]
    assert all(k.startswith("genericize:") for k in drops)
    assert stats["outcomes"].counts == dict(teacher.outcomes["genericize"])
    # The first prompt went with the schema (refused), then without; later prompts never carry it.
    assert ["response_format" in b for b in logged(log)] == [True, False, False, False]


def test_cache_key_includes_the_schema(tiny_lm, tmp_path) -> None:
    proc, url = serve(tiny_lm, "tiny", tmp_path / "requests.jsonl")
    try:
        cached = CachedBackend(
            HTTPBackend(HTTPConfig(url, "tiny", endpoint="chat")), ResponseCache(tmp_path / "c")
        )
        schema = lp.response_format("describe")
        cached.generate(["Describe Canberra."], max_new_tokens=4)
        cached.generate(["Describe Canberra."], max_new_tokens=4, schema=schema)
        assert cached.cache_stats.misses == 2  # with a schema is another answer
        cached.generate(["Describe Canberra."], max_new_tokens=4, schema=schema)
        assert cached.cache_stats.hits == 1
    finally:
        stop(proc)
    assert ["response_format" in b for b in logged(tmp_path / "requests.jsonl")] == [False, True]


def test_paper_profile_chooses_the_prompted_teacher_and_embedded_keeps_rules(tmp_path, monkeypatch) -> None:
    from fi_resources.models import TEACHERS
    from fi_resources.parts import TEACHER_JOBS
    from fi_resources.resources import ModelsResource, WarehouseResource
    from fi_resources.settings import TeacherSettings

    for var in ("FI_LLM_BASE_URL", "FI_JUDGE_BASE_URL", "FI_TEACHER_MODEL"):
        monkeypatch.delenv(var, raising=False)
    home = WarehouseResource(home=str(tmp_path))
    # No request is made here: a port nothing listens on is enough.
    paper = ModelsResource(profile="paper", warehouse=home, llm_base_url="http://127.0.0.1:9/v1").parts()
    for job in TEACHER_JOBS:
        teacher = paper.teacher(job, TeacherSettings())
        assert isinstance(teacher, PromptedTeacher)
        assert teacher.lm.inner.config.endpoint == "chat"  # the server applies the teacher's chat template
    assert paper.backend("teacher").inner.config.endpoint == "completions"  # the rule teacher's path
    embedded = ModelsResource(profile="embedded", warehouse=home).parts()
    assert embedded.profile.teacher_for("genericize") == "rules"
    assert (
        embedded.profile.teacher_for("instantiate", TeacherSettings(instantiate="llm").instantiate) == "llm"
    )
    with pytest.raises(ValueError, match="unknown teacher 'gpt'"):
        paper.teacher("describe", TeacherSettings(describe="gpt"))
    assert set(TEACHERS) == {"rules", "llm"}
