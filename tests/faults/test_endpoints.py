"""The HTTP backend against endpoints that misbehave, as real sockets on 127.0.0.1: a server that accepts and
never answers, one that drips its answer a byte a second, a dead port, servers answering garbage, and
credentials in the URL. Each case must end in bounded time with a clear `BackendError`."""

import base64
import json
import logging
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fi_resources.backends import BackendError, HTTPBackend, HTTPConfig, redact_url
from fi_resources.cache import CachedBackend, ResponseCache
from fi_resources.stages import backend_stats

GOOD = json.dumps({"choices": [{"text": " fine"}], "usage": {"completion_tokens": 1}})
# Small deadlines keep every case to seconds.
FAST = dict(request_deadline_s=2.0, total_deadline_s=5.0, backoff_s=0.1, backoff_max_s=0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_server(serve: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A plain socket server: each accepted connection is handed to `serve` in its own thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve, args=(conn, stopped), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stopped.set()
    listener.close()
    for c in conns:
        c.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def hanging() -> Iterator[str]:
    """Accepts, reads nothing, never answers."""
    yield from raw_server(lambda conn, stopped: stopped.wait())


@pytest.fixture
def dripping() -> Iterator[str]:
    """Sends the status line and headers of a 1000-byte answer, then one byte a second."""

    def serve(conn: socket.socket, stopped: threading.Event) -> None:
        read_request(conn)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            while not stopped.wait(1.0):
                conn.sendall(b" ")
        except OSError:
            pass  # the client gave up and closed

    yield from raw_server(serve)


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, content type, body), repeating the last one."""

    protocol_version = "HTTP/1.1"
    script: list[tuple[int, str, str]] = []
    calls = 0
    auth_seen: list[str | None] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        cls.auth_seen.append(self.headers.get("Authorization"))
        status, ctype, body = cls.script[min(cls.calls, len(cls.script) - 1)]
        cls.calls += 1
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted() -> Iterator[tuple[type[Scripted], str]]:
    handler = type("H", (Scripted,), {"script": [], "calls": 0, "auth_seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def fails(backend: HTTPBackend, prompts: list[str] | None = None) -> tuple[str, float]:
    """The error text and the seconds a generate call took to fail."""
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.generate(prompts or ["hello"], max_new_tokens=4)
    return str(info.value), time.monotonic() - t0


# ---- deadlines ----------------------------------------------------------------------------------------
def test_hanging_server_fails_at_the_total_deadline(hanging, fault):
    backend = HTTPBackend(HTTPConfig(hanging, "m", max_retries=5, **FAST))
    error, seconds = fails(backend)
    assert 4.5 <= seconds < 7
    assert f"{hanging}/completions" in error and "total_deadline_s=5 reached" in error
    assert re.search(r"last error: no answer within [\d.]+ s of sending the request", error)  # what timed out
    fault("clear error", bound_s=7)


def test_hanging_server_fails_after_the_bounded_retries(hanging, fault):
    backend = HTTPBackend(HTTPConfig(hanging, "m", max_retries=1, **FAST))
    error, seconds = fails(backend)
    assert 3.9 <= seconds < 6
    assert "failed after 2 attempts" in error and "total_deadline_s" not in error
    assert backend.stats.requests == 2 and backend.stats.retries == 1
    fault("clear error", bound_s=6)


def test_dripping_server_meets_the_request_deadline(dripping, fault):
    backend = HTTPBackend(HTTPConfig(dripping, "m", max_retries=0, **FAST))
    error, seconds = fails(backend)
    assert 1.9 <= seconds < 4
    assert f"{dripping}/completions" in error
    assert "request deadline of 2 s exceeded while reading the answer body" in error
    fault("clear error", bound_s=4)


def test_dripping_server_is_retried_within_the_total_deadline(dripping, fault):
    backend = HTTPBackend(HTTPConfig(dripping, "m", max_retries=10, **FAST))
    error, seconds = fails(backend)
    assert 4.5 <= seconds < 7 and "total_deadline_s=5 reached" in error
    fault("clear error", bound_s=7)


def test_a_failure_stops_the_other_prompts(hanging, fault):
    # 12 prompts, 3 at a time: without stopping the rest, four rounds of 2-attempt prompts would take 16 s.
    backend = HTTPBackend(HTTPConfig(hanging, "m", concurrency=3, max_retries=1, **FAST))
    error, seconds = fails(backend, [f"p{i}" for i in range(12)])
    assert seconds < 5.5 and "failed after 2 attempts" in error
    assert backend.stats.requests == 6  # the first three prompts' two attempts each; the rest never sent
    fault("clear error", bound_s=5.5)


def test_dead_port_fails_fast(fault):
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = HTTPBackend(HTTPConfig(url, "m", max_retries=3, **FAST))
    error, seconds = fails(backend)
    assert seconds < 3
    assert f"{url}/completions" in error and "failed after 4 attempts" in error
    assert "Connection refused" in error
    fault("clear error", bound_s=3)


def test_defaults_are_bounded(fault):
    c = HTTPConfig("http://127.0.0.1:1/v1", "m")
    assert (c.request_deadline_s, c.total_deadline_s) == (120.0, 600.0)
    with pytest.raises(ValueError, match="request_deadline_s must be positive"):
        HTTPConfig("http://127.0.0.1:1/v1", "m", request_deadline_s=0)
    fault("clear error")


# ---- garbage ------------------------------------------------------------------------------------------
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    "status, ctype, body, message",
    [
        (200, "text/plain", "this is not JSON", "malformed JSON: 'this is not JSON'"),
        (200, "text/html", HTML, "malformed JSON: '<html>"),
        (200, "application/json", '{"result": "no choices"}', "without completion text.*KeyError"),
        (200, "application/json", '{"choices": []}', "without completion text.*IndexError"),
        (200, "application/json", '{"choices": "abc"}', "without completion text.*TypeError"),
        (200, "application/json", '{"choices": [{"text": 5}]}', "without completion text.*text is int"),
        (200, "application/json", "[1, 2]", "without completion text.*not an object"),
        (
            200,
            "application/json",
            '{"choices": [{"text": "x"}], "usage": {"completion_tokens": "many"}}',
            "without completion text.*ValueError",
        ),
        (200, "application/json", "\xff\xfe", "malformed JSON"),
        (404, "text/html", HTML, "HTTP 404 .not retried.: <html>"),
        (502, "text/html", HTML, "failed after 3 attempts.*last error: HTTP 502: <html>"),
    ],
)
def test_garbage_is_a_clear_error(scripted, status, ctype, body, message, fault):
    handler, url = scripted
    handler.script = [(status, ctype, body)]
    backend = HTTPBackend(HTTPConfig(url, "m", max_retries=2, **FAST))
    error, seconds = fails(backend)
    assert seconds < 3
    assert f"{url}/completions" in error
    assert re.search(message, error), error
    assert handler.calls == (3 if status == 502 else 1)  # only overload answers are retried
    fault("clear error", bound_s=3)


def test_an_oversized_answer_is_refused(scripted, fault):
    handler, url = scripted
    handler.script = [(200, "application/json", json.dumps({"choices": [{"text": "x" * 5000}]}))]
    error, _ = fails(HTTPBackend(HTTPConfig(url, "m", max_response_bytes=1000, **FAST)))
    assert "over max_response_bytes=1000" in error and handler.calls == 1
    fault("clear error")


@pytest.fixture
def truncating() -> Iterator[str]:
    """Promises 100 bytes, sends 10 and closes."""

    def serve(conn: socket.socket, stopped: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"choices"')
        conn.close()

    yield from raw_server(serve)


def test_a_cut_off_answer_is_retried_then_a_clear_error(truncating, fault):
    error, seconds = fails(HTTPBackend(HTTPConfig(truncating, "m", max_retries=1, **FAST)))
    assert seconds < 3 and "failed after 2 attempts" in error and "broke off after 10 bytes" in error
    fault("clear error", bound_s=3)


def test_a_good_answer_still_works(scripted, fault):
    handler, url = scripted
    handler.script = [(503, "text/plain", "busy"), (200, "application/json", GOOD)]
    backend = HTTPBackend(HTTPConfig(url, "m", **FAST))
    assert backend.generate(["x", "y"], max_new_tokens=2) == [" fine", " fine"]
    assert backend.stats.tokens == 2
    fault("accepted")


# ---- credentials --------------------------------------------------------------------------------------
SECRET = "s3cr3t-Pa55"


def no_secret(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text) and "alice" not in str(text), text


def test_redact_url(fault):
    assert redact_url(f"http://alice:{SECRET}@host:8000/v1") == "http://host:8000/v1"
    assert redact_url("https://[::1]:8000/v1?x=1") == "https://[::1]:8000/v1?x=1"
    assert redact_url("http://a%40b:p%3Aq@h/v1") == "http://h/v1"
    fault("redacted")


def test_credentials_in_the_url_are_used_and_never_shown(scripted, tmp_path, caplog, fault):
    handler, url = scripted
    with_creds = url.replace("http://", f"http://alice:{SECRET}@")
    handler.script = [(200, "application/json", GOOD)]
    config = HTTPConfig(with_creds, "m", **FAST)
    backend = CachedBackend(HTTPBackend(config), ResponseCache(tmp_path / "responses.sqlite"))
    caplog.set_level(logging.DEBUG)
    assert backend.generate(["x"], max_new_tokens=2) == [" fine"]
    # Sent as basic auth, not in the URL.
    assert handler.auth_seen == ["Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()]
    identity = backend.cache_identity()
    plain = CachedBackend(HTTPBackend(HTTPConfig(url, "m")), ResponseCache(tmp_path / "other.sqlite"))
    assert identity == plain.cache_identity()  # stable: the same with or without credentials
    handler.script = [(500, "text/plain", "boom")]
    with pytest.raises(BackendError) as info:
        backend.generate(["not cached"], max_new_tokens=2)
    error = "".join(traceback.format_exception(info.value))
    assert f"{url}/completions" in error
    no_secret(
        error, backend_stats(backend), identity, backend.model_id, repr(config), config.base_url, caplog.text
    )
    fault("redacted")


def test_credentials_never_shown_when_the_endpoint_is_dead(fault):
    url = f"http://alice:{SECRET}@127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError) as info:
        HTTPBackend(HTTPConfig(url, "m", max_retries=1, **FAST)).generate(["x"], max_new_tokens=2)
    no_secret("".join(traceback.format_exception(info.value)))
    with pytest.raises(ValueError) as bad:
        HTTPConfig(url, "")
    no_secret(bad.value)
    with pytest.raises(ValueError, match="give one of them") as both:
        HTTPConfig(url, "m", api_key="k")
    no_secret(both.value)
    fault("redacted")


def test_api_key_is_not_in_the_config_repr(fault):
    assert SECRET not in repr(HTTPConfig("http://127.0.0.1:1/v1", "m", api_key=SECRET))
    fault("redacted")


def test_models_resource_keeps_url_credentials_out_of_metadata(tmp_path, monkeypatch, fault):
    from fi_resources.resources import ModelsResource, WarehouseResource

    monkeypatch.delenv("FI_LLM_API_KEY", raising=False)
    # From the environment: Dagster records resource config in its run storage, so the field refuses them.
    with pytest.raises(ValueError, match="llm_base_url http://h/v1 carries credentials") as info:
        ModelsResource(
            warehouse=WarehouseResource(home=str(tmp_path)), llm_base_url=f"http://alice:{SECRET}@h/v1"
        )
    no_secret(info.value)
    monkeypatch.setenv("FI_LLM_BASE_URL", f"http://alice:{SECRET}@127.0.0.1:1/v1")
    models = ModelsResource(
        profile="paper",
        warehouse=WarehouseResource(home=str(tmp_path)),
        llm_timeout_s=3.0,
        llm_total_deadline_s=7.0,
    ).parts()
    teacher = models.backend("teacher")
    assert teacher.inner.config.auth == ("alice", SECRET)
    assert (teacher.inner.config.request_deadline_s, teacher.inner.config.total_deadline_s) == (3.0, 7.0)
    no_secret(backend_stats(teacher), teacher.cache_identity(), teacher.model_id, repr(teacher.inner.config))
    fault("redacted")
