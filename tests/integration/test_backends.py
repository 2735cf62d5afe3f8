"""The HTTP backend against a real OpenAI-compatible server (`python -m fi_resources.serve`, tiny random model,
a subprocess on 127.0.0.1), the response cache, and the paper profile's routing."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests

from fi_resources.backends import BackendError, HTTPBackend, HTTPConfig, LocalBackend
from fi_resources.cache import CachedBackend, ResponseCache
from fi_resources.lm import CausalLM, materialize_tiny_lm

ROOT = Path(__file__).resolve().parents[2]
# Prompts end in different words: the tiny random model's greedy output depends on them, so outputs differ.
PROMPTS = [
    "The capital of France is",
    "Question: what is a tree?\nAnswer:",
    "Once upon a time there was a dragon named",
    "List three colours: red,",
    "Translate to French: good morning",
    "A short poem about the sea\n",
    "def add(a, b):",
    "Numbers: 1 2 3 4",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "fi_resources.serve", "--model", str(model), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_listening(proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("serving "):
            # Keep draining its output so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def tiny_lm_path(model_cache) -> Path:
    return materialize_tiny_lm(model_cache / "tiny-llama")


@pytest.fixture(scope="module")
def server(tiny_lm_path):
    port = free_port()
    proc = start_server(tiny_lm_path, port)
    wait_listening(proc)
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


def metrics(url: str, reset_peak: bool = False) -> dict:
    return requests.get(f"{url}/metrics" + ("?reset_peak=1" if reset_peak else ""), timeout=10).json()


def served(url: str) -> int:
    m = metrics(url)
    return m["completion_requests"] + m["chat_requests"]


def test_lists_the_served_model(server, tiny_lm_path):
    data = requests.get(f"{server}/models", timeout=10).json()["data"]
    assert [m["id"] for m in data] == [str(tiny_lm_path)]


def test_outputs_equal_the_local_backend(server, tiny_lm_path):
    local = LocalBackend(CausalLM(tiny_lm_path))
    http = HTTPBackend(HTTPConfig(server, str(tiny_lm_path), concurrency=4))
    want = local.generate(PROMPTS, max_new_tokens=12)
    assert len(set(want)) > 1  # a check that could not tell prompts apart would prove nothing
    assert http.generate(PROMPTS, max_new_tokens=12) == want
    # Stop sequences: the server cuts, like the local backend does.
    stop = want[0][2:4]
    assert http.generate(PROMPTS, max_new_tokens=12, stop=stop) == local.generate(
        PROMPTS, max_new_tokens=12, stop=stop
    )
    assert http.stats.prompts == 2 * len(PROMPTS) and http.stats.tokens > 0
    # Chat endpoint: the server applies the model's chat template, as LocalBackend.chat_prompt does.
    chat = HTTPBackend(HTTPConfig(server, str(tiny_lm_path), endpoint="chat"))
    users = ["Hello there", "What is a cat?"]
    assert chat.generate(users, max_new_tokens=8) == local.generate(
        [local.chat_prompt(u) for u in users], max_new_tokens=8
    )


def test_concurrency_bound_is_respected(server, tiny_lm_path):
    before = metrics(server, reset_peak=True)
    http = HTTPBackend(HTTPConfig(server, str(tiny_lm_path), concurrency=3))
    http.generate(PROMPTS * 3, max_new_tokens=6)
    after = metrics(server)
    assert 1 < after["max_in_flight"] <= 3
    # Requests waiting while the model is busy are decoded together in the next batch.
    assert after["batched_prompts"] - before["batched_prompts"] == 24
    assert after["batches"] - before["batches"] < 24


def test_cache_hit_on_rerun_makes_no_request(server, tiny_lm_path, tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    cfg = HTTPConfig(server, str(tiny_lm_path), concurrency=4)
    first = CachedBackend(HTTPBackend(cfg), cache)
    before = served(server)
    out = first.generate(PROMPTS, max_new_tokens=10)
    assert served(server) - before == len(PROMPTS)
    second = CachedBackend(HTTPBackend(cfg), cache)
    assert second.generate(PROMPTS, max_new_tokens=10) == out
    assert served(server) - before == len(PROMPTS)  # no new request
    assert second.cache_stats.as_dict() == {"cache_hits": len(PROMPTS), "cache_misses": 0, "model_calls": 0}


def test_retries_until_a_late_server_listens(tiny_lm_path):
    port = free_port()
    procs = []
    starter = threading.Timer(2.0, lambda: procs.append(start_server(tiny_lm_path, port)))
    starter.start()
    try:
        cfg = HTTPConfig(
            f"http://127.0.0.1:{port}", str(tiny_lm_path), max_retries=40, backoff_s=0.2, backoff_max_s=2.0
        )
        http = HTTPBackend(cfg)
        t0 = time.monotonic()
        out = http.generate(PROMPTS[:2], max_new_tokens=4)
        assert len(out) == 2 and time.monotonic() - t0 > 2.0
        assert http.stats.retries >= 1  # the first attempts found nothing listening
    finally:
        starter.join()
        for p in procs:
            stop(p)


def test_dead_endpoint_fails_clearly_in_bounded_time():
    url = f"http://127.0.0.1:{free_port()}/v1"
    http = HTTPBackend(HTTPConfig(url, "m", max_retries=2, backoff_s=0.05, timeout_s=2))
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=f"{url}/completions.*after 3 attempts"):
        http.generate(["hello"], max_new_tokens=4)
    assert time.monotonic() - t0 < 10
    assert http.stats.requests == 3


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, body) pairs, repeating the last one."""

    script: list[tuple[int, str]] = []
    headers_out: dict[str, str] = {}
    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        status, body = cls.script[min(cls.calls, len(cls.script) - 1)]
        cls.calls += 1
        data = body.encode()
        self.send_response(status)
        for k, v in cls.headers_out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted():
    handler = type("H", (Scripted,), {"script": [], "calls": 0, "headers_out": {}})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


GOOD = json.dumps({"choices": [{"text": " fine"}], "usage": {"completion_tokens": 1}})


def test_malformed_json_is_a_clear_error(scripted):
    handler, url = scripted
    handler.script = [(200, "this is not JSON")]
    with pytest.raises(BackendError, match="malformed JSON.*this is not JSON"):
        HTTPBackend(HTTPConfig(url, "m")).generate(["x"], max_new_tokens=2)
    handler.script, handler.calls = [(200, json.dumps({"result": "no choices"}))], 0
    with pytest.raises(BackendError, match="without completion text"):
        HTTPBackend(HTTPConfig(url, "m")).generate(["x"], max_new_tokens=2)
    handler.script, handler.calls = [(400, '{"error": "bad model"}')], 0
    with pytest.raises(BackendError, match="HTTP 400 .not retried"):
        HTTPBackend(HTTPConfig(url, "m")).generate(["x"], max_new_tokens=2)
    assert handler.calls == 1


def test_retries_on_5xx_and_429(scripted):
    handler, url = scripted
    handler.script = [(503, "overloaded"), (429, "slow down"), (200, GOOD)]
    http = HTTPBackend(HTTPConfig(url, "m", backoff_s=0.01))
    assert http.generate(["x"], max_new_tokens=2) == [" fine"]
    assert http.stats.retries == 2 and handler.calls == 3


def test_honours_retry_after(scripted):
    handler, url = scripted
    handler.script = [(429, "slow down"), (200, GOOD)]
    handler.headers_out = {"Retry-After": "1"}
    t0 = time.monotonic()
    assert HTTPBackend(HTTPConfig(url, "m", backoff_s=0.01)).generate(["x"], max_new_tokens=2) == [" fine"]
    assert time.monotonic() - t0 >= 1.0


def test_paper_profile_routes_generation_to_the_server(server, tiny_lm_path, tmp_path, monkeypatch):
    from fi_resources.resources import ModelsResource, WarehouseResource

    for var in ("FI_LLM_BASE_URL", "FI_STUDENT_BASE_URL", "FI_JUDGE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    name, home = str(tiny_lm_path), WarehouseResource(home=str(tmp_path))
    with pytest.raises(ValueError, match="FI_LLM_BASE_URL"):
        ModelsResource(profile="paper", warehouse=home).parts().backend("teacher")
    models = ModelsResource(
        profile="paper", warehouse=home, llm_base_url=server, teacher_model=name, judge_model=name
    ).parts()
    teacher = models.backend("teacher")
    assert isinstance(teacher, CachedBackend) and isinstance(teacher.inner, HTTPBackend)
    before = served(server)
    local = LocalBackend(CausalLM(tiny_lm_path))
    # The teacher's chat-formatted, prefix-forced prompts are formatted with the teacher's tokenizer.
    prompt = teacher.chat_prompt("Describe the sea.") + "This text"
    assert prompt == local.chat_prompt("Describe the sea.") + "This text"
    assert teacher.generate([prompt], max_new_tokens=6) == local.generate([prompt], max_new_tokens=6)
    assert models.backend("judge").generate(["Rate this."], max_new_tokens=4)
    assert served(server) - before == 2
    # Students generate in-process unless a served copy is configured.
    student = models.backend("instantiator", tiny_lm_path, version="abc")
    assert isinstance(student.inner, LocalBackend)
    served_students = ModelsResource(profile="paper", warehouse=home, student_base_url=server).parts()
    student = served_students.backend("instantiator", tiny_lm_path, version="abc")
    assert isinstance(student.inner, HTTPBackend)
    assert student.generate(PROMPTS[:2], max_new_tokens=5) == local.generate(PROMPTS[:2], max_new_tokens=5)
    assert served(server) - before == 4


def test_rerun_of_a_generation_asset_makes_no_model_call(fi_home, tiny_lm_path):
    import dagster as dg

    from fi_assets.templates import query_templates
    from fi_resources.resources import ModelsResource, TemplateBankSettingsResource, WarehouseResource
    from fi_resources.warehouse import Artifact

    queries = pd.DataFrame(
        {"query_id": [f"q{i}" for i in range(5)], "query": [f"What is thing {i} in Paris?" for i in range(5)]}
    )
    genericizer = Artifact(str(tiny_lm_path), data_version="tiny")
    models = ModelsResource(profile="tiny", warehouse=WarehouseResource(home=str(fi_home)))
    settings = TemplateBankSettingsResource(max_queries=5)
    runs = []
    for _ in range(2):
        with dg.build_asset_context() as context:
            out = query_templates(context, queries, genericizer, models, settings)
        runs.append({k: getattr(v, "value", v) for k, v in out.metadata.items()})
    assert (runs[0]["model_calls"], runs[0]["cache_misses"], runs[0]["cache_hits"]) == (5, 5, 0)
    assert (runs[1]["model_calls"], runs[1]["cache_misses"], runs[1]["cache_hits"]) == (0, 0, 5)


def test_rerun_of_descriptions_and_instantiations_makes_no_model_call(fi_home, tiny_lm_path):
    """Both other generation assets, run twice on a few rows with the tiny models."""
    import dagster as dg

    from fi_assets.documents import document_descriptions
    from fi_assets.generation import instantiated_pairs
    from fi_resources import resources as r
    from fi_resources.warehouse import Artifact

    docs = pd.DataFrame(
        {
            "doc_id": ["d1", "d2"],
            "shard": "s",
            "source_doc_id": ["d1", "d2"],  # one-passage documents: the passage is the whole source
            "passage": [0, 0],
            "offset": [0, 0],
            "title": ["Paris", "Moon"],
            "text": ["Paris is the capital of France. It lies on the Seine.", "The Moon orbits the Earth."],
        }
    )
    matches = pd.DataFrame(
        {
            "match_id": ["m1", "m2", "m3"],
            "doc_id": ["d1", "d2", "d1"],
            "shard": "s",
            "template_id": ["t1", "t2", "t2"],
            "query_id": ["q1", "q2", "q2"],
            "template": ["What is <fi>city</fi>?", "How far is <fi>body</fi>?", "How far is <fi>body</fi>?"],
        }
    )
    models = r.ModelsResource(profile="tiny", warehouse=r.WarehouseResource(home=str(fi_home)))
    teacher_settings, instantiation_settings = r.TeacherSettingsResource(), r.InstantiationSettingsResource()
    student = Artifact(str(tiny_lm_path), data_version="tiny")
    meta = []
    for _ in range(2):
        with dg.build_asset_context() as context:
            d = document_descriptions(context, docs, models, teacher_settings)
        with dg.build_asset_context() as context:
            p = instantiated_pairs(context, matches, docs, student, models, instantiation_settings)
        meta.append([{k: getattr(v, "value", v) for k, v in o.metadata.items()} for o in (d, p)])
        assert len(d.value) == 2 and len(p.value) == 3
    (d1, p1), (d2, p2) = meta
    assert (d1["model_calls"], p1["model_calls"]) == (2, 3)
    assert (d2["model_calls"], d2["cache_hits"], p2["model_calls"], p2["cache_hits"]) == (0, 2, 0, 3)
    assert p1["decoded_tokens"] == p2["decoded_tokens"] > 0


def test_paper_encoder_by_name_fails_clearly_offline(monkeypatch, tmp_path):
    from fi_resources.resources import ModelsResource, WarehouseResource

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FI_ENCODER", raising=False)
    with pytest.raises(
        RuntimeError, match="encoder 'BAAI/bge-m3' by name.*huggingface-cli download BAAI/bge-m3"
    ):
        ModelsResource(
            profile="paper", warehouse=WarehouseResource(home=str(tmp_path))
        ).parts().store.encoder()


def test_server_rejects_bad_requests_clearly(server, tiny_lm_path):
    with pytest.raises(BackendError, match="HTTP 404 .not retried.*does not exist"):
        HTTPBackend(HTTPConfig(server, "no-such-model", max_retries=0)).generate(["x"], max_new_tokens=2)
    with pytest.raises(BackendError, match="HTTP 400 .*greedy"):
        HTTPBackend(HTTPConfig(server, str(tiny_lm_path), temperature=0.7)).generate(["x"], max_new_tokens=2)
    with requests.Session() as s:  # one keep-alive connection: an error must not break the next request
        assert s.post(f"{server}/nope", json={"a": 1}, timeout=30).status_code == 404
        assert s.post(f"{server}/completions", data=b"{not json", timeout=30).status_code == 400
        r = s.post(f"{server}/completions", json={"prompt": ["a", "b"], "max_tokens": 2}, timeout=60)
        assert r.status_code == 200 and [c["index"] for c in r.json()["choices"]] == [0, 1]
