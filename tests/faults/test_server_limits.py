"""The bundled server's limits, against the real thing (`python -m fi_resources.serve`, tiny random model, a
subprocess on 127.0.0.1): body size (413), max_tokens cap and malformed parameters (400, never 500), and
connections that go silent are closed."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fi_resources.lm import materialize_tiny_lm
from fi_resources.serve import MAX_BODY_BYTES, MAX_TOKENS_LIMIT

ROOT = Path(__file__).resolve().parents[2]
SOCKET_TIMEOUT_S = 1.0


def start(model: Path, *flags: str, timeout: float = 240) -> tuple[subprocess.Popen, str]:
    """The server on a free port, and the URL from its "serving" line (which also shows the bound host)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fi_resources.serve", "--model", str(model), "--port", "0", *flags],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if found := re.match(r"serving .* on (http://\S+)", line):
            # Keep draining its output so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, found.group(1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(lines[-30:]))


@pytest.fixture(scope="module")
def server(model_cache) -> Iterator[str]:
    model = materialize_tiny_lm(model_cache / "tiny-llama")
    proc, url = start(model, "--name", "tiny", "--socket-timeout", str(SOCKET_TIMEOUT_S))
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


def raw_exchange(url: str, data: bytes, wait_s: float = 10) -> tuple[bytes, float]:
    """Send `data` on a fresh connection; everything the server sends until it closes, and when it closed."""
    t0 = time.monotonic()
    with socket.create_connection(address(url), timeout=wait_s) as s:
        if data:
            s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got, time.monotonic() - t0


def errors(url: str) -> int:
    return requests.get(f"{url}/metrics", timeout=10).json()["errors"]


def test_binds_localhost_by_default(server, fault):
    assert server.startswith("http://127.0.0.1:")
    fault("n/a")


def test_defaults(fault):
    assert (MAX_BODY_BYTES, MAX_TOKENS_LIMIT) == (4 * 2**20, 2048)
    fault("n/a")


def test_too_large_body_is_413(server, fault):
    body = json.dumps({"prompt": "x" * MAX_BODY_BYTES, "max_tokens": 2}).encode()
    r = requests.post(
        f"{server}/completions", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert r.status_code == 413 and "over this server's limit of 4194304" in r.json()["error"]["message"]
    assert r.headers["Connection"] == "close"
    r = requests.post(f"{server}/completions", json={"prompt": "hello", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200  # the server is fine afterwards
    fault("refused")


def test_too_large_body_is_refused_before_it_is_sent(server, fault):
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * MAX_BODY_BYTES}\r\nExpect: 100-continue\r\n\r\n"
    )
    got, seconds = raw_exchange(server, head.encode())
    assert got.startswith(b"HTTP/1.1 413") and seconds < SOCKET_TIMEOUT_S
    fault("refused", bound_s=SOCKET_TIMEOUT_S)


GOOD = {"prompt": "hello", "max_tokens": 2}


@pytest.mark.parametrize(
    "path, change, message",
    [
        ("completions", {"temperature": "hot"}, "temperature must be a number"),
        ("completions", {"temperature": [1]}, "temperature must be a number"),
        ("completions", {"temperature": 0.5}, "only greedy decoding"),
        ("completions", {"n": "two"}, "n must be 1"),
        ("completions", {"n": True}, "n must be 1"),
        ("completions", {"n": 2}, "n must be 1"),
        ("completions", {"max_tokens": "5"}, "max_tokens must be a positive integer"),
        ("completions", {"max_tokens": True}, "max_tokens must be a positive integer"),
        ("completions", {"max_tokens": 0}, "max_tokens must be a positive integer"),
        ("completions", {"max_tokens": 2.5}, "max_tokens must be a positive integer"),
        ("completions", {"max_tokens": MAX_TOKENS_LIMIT + 1}, "over this server's limit of 2048"),
        ("completions", {"max_tokens": None, "max_completion_tokens": 10**9}, "over this server's limit"),
        ("completions", {"stream": True}, "streaming is not supported"),
        ("completions", {"stop": 5}, "stop must be"),
        ("completions", {"stop": [1]}, "stop must be"),
        ("completions", {"prompt": 5}, "prompt must be"),
        ("completions", {"prompt": []}, "prompt must be"),
        ("completions", {"prompt": [1, 2]}, "prompt must be"),
        ("completions", {"prompt": None}, "prompt must be"),
        ("completions", {"model": ["tiny"]}, "model must be a string"),
        ("completions", {"prompt": "word " * 2100}, "over the model's context of 2048 tokens"),
        ("chat/completions", {"messages": "hi"}, "messages must be"),
        ("chat/completions", {"messages": []}, "messages must be"),
        ("chat/completions", {"messages": [{"role": 1, "content": "x"}]}, "messages must be"),
        ("chat/completions", {"messages": [{"role": "user", "content": ["x"]}]}, "messages must be"),
    ],
)
def test_malformed_parameters_are_400(server, path, change, message, fault):
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    if path.startswith("chat"):
        body.pop("prompt", None)
    r = requests.post(f"{server}/{path}", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    fault("refused")


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b"\xff\xfe", 400, "not JSON"),
    ],
)
def test_malformed_bodies_are_400(server, data, status, message, fault):
    r = requests.post(f"{server}/completions", data=data, timeout=60)
    assert r.status_code == status and message in r.json()["error"]["message"]
    fault("refused")


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ("Content-Length: abc\r\n", b"400", b"Content-Length must be a non-negative integer"),
        ("Content-Length: -5\r\n", b"400", b"Content-Length must be a non-negative integer"),
        ("Transfer-Encoding: chunked\r\n", b"411", b"chunked request bodies are not supported"),
    ],
)
def test_unframed_bodies_are_refused_and_the_connection_closed(server, headers, status, message, fault):
    got, seconds = raw_exchange(server, f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert got.startswith(b"HTTP/1.1 " + status) and message in got
    assert seconds < SOCKET_TIMEOUT_S  # closed at once, not by the idle timeout
    fault("refused", bound_s=SOCKET_TIMEOUT_S)


def test_errors_are_counted_and_the_connection_stays_usable(server, fault):
    before = errors(server)
    with requests.Session() as s:  # one keep-alive connection
        assert s.post(f"{server}/completions", json={**GOOD, "n": "x"}, timeout=60).status_code == 400
        assert s.post(f"{server}/completions", json=GOOD, timeout=60).status_code == 200
    assert errors(server) - before == 1
    fault("refused")


def test_silent_client_is_disconnected(server, fault):
    got, seconds = raw_exchange(server, b"")
    assert got == b"" and SOCKET_TIMEOUT_S * 0.8 <= seconds < SOCKET_TIMEOUT_S + 3
    fault("stopped", bound_s=SOCKET_TIMEOUT_S + 3)


def test_client_stalled_mid_request_is_disconnected(server, fault):
    partial = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b'{"prompt"'
    got, seconds = raw_exchange(server, partial)
    assert got == b"" and seconds < SOCKET_TIMEOUT_S + 3
    got, seconds = raw_exchange(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers unfinished
    assert got == b"" and seconds < SOCKET_TIMEOUT_S + 3
    assert requests.get(f"{server}/health", timeout=10).json() == {"status": "ok"}
    fault("stopped", bound_s=2 * (SOCKET_TIMEOUT_S + 3))


def test_idle_keep_alive_connection_is_closed(server, fault):
    with socket.create_connection(address(server), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        seconds = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 200") and seconds < SOCKET_TIMEOUT_S + 3
    fault("stopped", bound_s=SOCKET_TIMEOUT_S + 3)
