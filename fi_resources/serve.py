"""A small OpenAI-compatible server for a local model (the embedded models, a fine-tuned student, a test model).

    python -m fi_resources.serve --model PATH [--name NAME] [--host 127.0.0.1] [--port 8000] [--max-batch 16]
        [--max-body-bytes 4194304] [--max-tokens-limit 2048] [--socket-timeout 30] [--trust-remote-code]
        [--request-log PATH] [--refuse-response-format]

Endpoints: GET /v1/models, POST /v1/completions (prompt: string or list), POST /v1/chat/completions,
GET /health, GET /metrics (request counters, as JSON). Decoding is greedy only (temperature 0), like the
pipeline's local backend, so a served model answers exactly what the in-process one does.

Limits: a request body over --max-body-bytes is answered 413, max_tokens over --max-tokens-limit (or a
prompt that does not fit the model's context) 400, every malformed parameter 400; a connection that sends
nothing for --socket-timeout seconds is closed. It listens on 127.0.0.1 unless --host says otherwise.

`response_format` (OpenAI structured output) is checked and accepted but not enforced: there is no
constrained decoding, so clients parse strictly as they must for any server. `--refuse-response-format`
answers it 400 instead, as servers without structured output do (to test a client's fallback);
`--request-log PATH` appends every POST body as one JSON line (to see the prompts a run sent).

Requests that arrive together are decoded together: a single worker thread takes the queued prompts (up to
--max-batch, waiting --batch-wait-ms for more) and runs one batched `CausalLM.generate` per max_tokens value.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fi_resources.lm import CausalLM

log = logging.getLogger("fi_resources.serve")


MAX_BODY_BYTES = 4 * 2**20
MAX_TOKENS_LIMIT = 2048
SOCKET_TIMEOUT_S = 30.0
# A too-large body up to this size is read and dropped before the 413, so that a client still sending it
# sees the answer rather than a reset connection; a larger one is answered at once and the connection closed.
_DRAIN_LIMIT = 64 * 2**20


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    prompt: str
    max_tokens: int
    done: threading.Event = field(default_factory=threading.Event)
    text: str = ""
    error: BaseException | None = None


def cut_at_stop(text: str, stops: list[str]) -> str:
    """OpenAI semantics: the completion ends before the earliest stop sequence, which is not returned."""
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class Batcher:
    """One worker thread owns the model; request threads queue prompts and wait for their text."""

    def __init__(self, lm: CausalLM, max_batch: int = 16, batch_wait_s: float = 0.005):
        self.lm = lm
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.queue: queue.Queue[_Job] = queue.Queue()
        self.batches = 0
        self.batched_prompts = 0
        threading.Thread(target=self._loop, name="batcher", daemon=True).start()

    def submit(self, prompts: list[str], max_tokens: int) -> list[str]:
        jobs = [_Job(p, max_tokens) for p in prompts]
        for j in jobs:
            self.queue.put(j)
        for j in jobs:
            j.done.wait()
            if j.error:
                raise j.error
        return [j.text for j in jobs]

    def _loop(self) -> None:
        while True:
            jobs = [self.queue.get()]
            deadline = time.monotonic() + self.batch_wait_s
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict[int, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.max_tokens, []).append(j)
            for max_tokens, group in groups.items():
                try:
                    texts = self.lm.generate(
                        [j.prompt for j in group], max_new_tokens=max_tokens, batch_size=self.max_batch
                    )
                    for j, t in zip(group, texts, strict=True):
                        j.text = t
                except Exception as exc:  # the request threads report it as a 500
                    for j in group:
                        j.error = exc
                self.batches += 1
                self.batched_prompts += len(group)
                for j in group:
                    j.done.set()


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {
            "requests": 0,
            "completion_requests": 0,
            "chat_requests": 0,
            "errors": 0,
            "prompts": 0,
            "completion_tokens": 0,
            "in_flight": 0,
            "max_in_flight": 0,
        }

    def add(self, **deltas: int) -> None:
        with self.lock:
            for k, v in deltas.items():
                self.counts[k] += v
            self.counts["max_in_flight"] = max(self.counts["max_in_flight"], self.counts["in_flight"])

    def snapshot(self, reset_peak: bool = False) -> dict:
        with self.lock:
            out = dict(self.counts)
            if reset_peak:  # start a fresh measurement of the concurrency peak
                self.counts["max_in_flight"] = self.counts["in_flight"]
            return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a count


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, f"{key} must be a number, not {value!r}")
    return float(value)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        lm: CausalLM,
        name: str,
        max_batch: int,
        batch_wait_s: float,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_tokens_limit: int = MAX_TOKENS_LIMIT,
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        request_log: str = "",
        refuse_response_format: bool = False,
    ):
        self.lm = lm
        self.request_log = request_log
        self.refuse_response_format = refuse_response_format
        self._log_lock = threading.Lock()
        self.model_name = name
        self.max_body_bytes = max_body_bytes
        self.max_tokens_limit = max_tokens_limit
        self.socket_timeout_s = socket_timeout_s
        self.context = getattr(lm.model.config, "max_position_embeddings", None)
        self.batcher = Batcher(lm, max_batch, batch_wait_s)
        self.metrics = Metrics()
        self.started = int(time.time())
        super().__init__(address, Handler)

    def log_request_body(self, path: str, body: dict) -> None:
        if not self.request_log:
            return
        line = json.dumps({"path": path, "body": body}, ensure_ascii=False)
        with self._log_lock, open(self.request_log, "a", encoding="utf8") as f:
            f.write(line + "\n")

    # ---- OpenAI request handling ---------------------------------------------------------------
    def _common(self, body: dict) -> tuple[int, list[str]]:
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise RequestError(400, f"model must be a string, not {model!r}")
        if model not in (None, self.model_name):
            raise RequestError(
                404, f"The model {model!r} does not exist; this server serves {self.model_name!r}"
            )
        if _number(body, "temperature", 0.0) != 0.0:
            raise RequestError(400, "only greedy decoding (temperature 0) is supported")
        n = body.get("n")
        if n is not None and not (_is_int(n) and n == 1):
            raise RequestError(400, f"n must be 1, not {n!r}")
        if body.get("stream") not in (None, False):
            raise RequestError(400, "streaming is not supported: send stream false or leave it out")
        fmt = body.get("response_format")
        if fmt is not None:
            if self.refuse_response_format:
                raise RequestError(400, "response_format is not supported by this server")
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
                raise RequestError(
                    400, "response_format must be an object with type text, json_object or json_schema"
                )
            if fmt["type"] == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
                raise RequestError(400, "response_format json_schema needs a json_schema object")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
        if not _is_int(max_tokens) or max_tokens < 1:
            raise RequestError(400, f"max_tokens must be a positive integer, not {max_tokens!r}")
        if max_tokens > self.max_tokens_limit:
            raise RequestError(
                400, f"max_tokens {max_tokens} is over this server's limit of {self.max_tokens_limit}"
            )
        stop = body.get("stop") or []
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise RequestError(400, "stop must be a string or a list of strings")
        return max_tokens, stops

    def _check_fits(self, prompts: list[str], max_tokens: int) -> None:
        """A prompt that cannot fit the model's context is the client's mistake (400), and would otherwise
        cost a long, useless decode."""
        if not self.context:
            return
        for i, p in enumerate(prompts):
            n = len(self.lm.tokenizer(p)["input_ids"])
            if n + max_tokens > self.context:
                raise RequestError(
                    400,
                    f"prompt {i} is {n} tokens; with max_tokens {max_tokens} it is over the model's context "
                    f"of {self.context} tokens",
                )

    def _usage(self, prompts: list[str], texts: list[str]) -> dict:
        tok = self.lm.tokenizer
        p = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in prompts)
        c = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts)
        self.metrics.add(completion_tokens=c)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def completions(self, body: dict) -> dict:
        max_tokens, stops = self._common(body)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError(400, "prompt must be a string or a non-empty list of strings")
        self._check_fits(prompts, max_tokens)
        self.metrics.add(completion_requests=1, prompts=len(prompts))
        texts = [cut_at_stop(t, stops) for t in self.batcher.submit(prompts, max_tokens)]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {"index": i, "text": t, "finish_reason": "length", "logprobs": None}
                for i, t in enumerate(texts)
            ],
            "usage": self._usage(prompts, texts),
        }

    def chat(self, body: dict) -> dict:
        max_tokens, stops = self._common(body)
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and isinstance(m.get("role"), str)
                for m in messages
            )
        ):
            raise RequestError(400, "messages must be a non-empty list of {role, content} objects")
        tok = self.lm.tokenizer
        if tok.chat_template:
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        self._check_fits([prompt], max_tokens)
        self.metrics.add(chat_requests=1, prompts=1)
        text = cut_at_stop(self.batcher.submit([prompt], max_tokens)[0], stops)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            ],
            "usage": self._usage([prompt], [text]),
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    server: ModelServer

    def setup(self) -> None:
        # Every socket read and write waits at most this long, so a client that connects and sends nothing
        # (or stops halfway) does not hold a thread forever; the base class then closes the connection.
        self.timeout = self.server.socket_timeout_s
        super().setup()

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: dict, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # also makes the base class close it after this answer
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self.server.metrics.add(errors=1)
        error = {"message": message, "type": "invalid_request_error", "code": status}
        self._send(status, {"error": error}, close=close)

    def _body_length(self) -> int | None:
        """The declared body length, or None after answering why it is refused (the connection is closed:
        what follows on it can no longer be framed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._error(411, "chunked request bodies are not supported: send a Content-Length", close=True)
            return None
        value = self.headers.get("Content-Length") or "0"
        if not value.isdigit():
            self._error(400, f"Content-Length must be a non-negative integer, not {value!r}", close=True)
            return None
        length = int(value)
        if length > self.server.max_body_bytes:
            if length <= _DRAIN_LIMIT:
                self._discard(length)
            limit = self.server.max_body_bytes
            self._error(
                413, f"request body of {length} bytes is over this server's limit of {limit}", close=True
            )
            return None
        return length

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 2**16))
            if not chunk:
                return
            length -= len(chunk)

    def handle_expect_100(self) -> bool:
        # A client that asks first (Expect: 100-continue) is told 413 before it sends a too-large body.
        length = self.headers.get("Content-Length") or "0"
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            limit = self.server.max_body_bytes
            self._error(
                413, f"request body of {length} bytes is over this server's limit of {limit}", close=True
            )
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        self.server.metrics.add(requests=1)
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            model = {"id": self.server.model_name, "object": "model", "created": self.server.started}
            self._send(200, {"object": "list", "data": [{**model, "owned_by": "fineinstructions"}]})
        elif path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif path in ("/metrics", "/v1/metrics"):
            b = self.server.batcher
            snap = self.server.metrics.snapshot(reset_peak="reset_peak=1" in self.path)
            self._send(200, {**snap, "batches": b.batches, "batched_prompts": b.batched_prompts})
        else:
            self._error(404, f"no route GET {path}")

    def do_POST(self) -> None:
        m = self.server.metrics
        m.add(requests=1, in_flight=1)
        try:
            path = self.path.split("?")[0].rstrip("/")
            routes = {"/v1/completions": self.server.completions, "/v1/chat/completions": self.server.chat}
            # Read the body whatever the route: an unread body would corrupt the next request on this
            # keep-alive connection.
            length = self._body_length()
            if length is None:
                return
            raw = self.rfile.read(length)
            if path not in routes:
                self._error(404, f"no route POST {path}")
                return
            try:
                body = json.loads(raw or b"null")
            except json.JSONDecodeError as exc:
                self._error(400, f"request body is not JSON: {exc}")
                return
            if not isinstance(body, dict):
                self._error(400, "request body must be a JSON object")
                return
            self.server.log_request_body(path, body)
            try:
                self._send(200, routes[path](body))
            except RequestError as exc:
                self._error(exc.status, str(exc))
            except Exception as exc:
                log.exception("generation failed")
                self._error(500, f"generation failed: {exc}")
        finally:
            m.add(in_flight=-1)


def make_server(
    model: str,
    name: str = "",
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 16,
    batch_wait_ms: float = 5.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_tokens_limit: int = MAX_TOKENS_LIMIT,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
    trust_remote_code: bool = False,
    request_log: str = "",
    refuse_response_format: bool = False,
) -> ModelServer:
    lm = CausalLM(model, name=name or model, trust_remote_code=trust_remote_code)
    limits = dict(
        max_body_bytes=max_body_bytes,
        max_tokens_limit=max_tokens_limit,
        socket_timeout_s=socket_timeout_s,
        request_log=request_log,
        refuse_response_format=refuse_response_format,
    )
    return ModelServer((host, port), lm, name or model, max_batch, batch_wait_ms / 1000, **limits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved transformers model folder (or hub name)")
    parser.add_argument("--name", default="", help="the served model name (default: --model as given)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger request bodies are answered 413"
    )
    parser.add_argument(
        "--max-tokens-limit", type=int, default=MAX_TOKENS_LIMIT, help="larger max_tokens is answered 400"
    )
    parser.add_argument(
        "--socket-timeout",
        type=float,
        default=SOCKET_TIMEOUT_S,
        help="seconds a connection may stay silent (idle keep-alive, or a client stalled mid-request)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model run the code it ships (off by default)",
    )
    parser.add_argument("--request-log", default="", help="append each POST body as a JSON line to this file")
    parser.add_argument(
        "--refuse-response-format",
        action="store_true",
        help="answer 400 to any response_format, as a server without structured output does",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(
        args.model,
        args.name,
        args.host,
        args.port,
        args.max_batch,
        args.batch_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_tokens_limit=args.max_tokens_limit,
        socket_timeout_s=args.socket_timeout,
        trust_remote_code=args.trust_remote_code,
        request_log=args.request_log,
        refuse_response_format=args.refuse_response_format,
    )
    host, port = server.server_address[:2]
    # Tests and scripts wait for this line (and read the port from it when --port 0).
    print(f"serving {server.model_name!r} on http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
