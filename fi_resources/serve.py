"""A small OpenAI-compatible server for a local model (the embedded models, a fine-tuned student, a test model).

    python -m fi_resources.serve --model PATH [--name NAME] [--host 127.0.0.1] [--port 8000] [--max-batch 16]

Endpoints: GET /v1/models, POST /v1/completions (prompt: string or list), POST /v1/chat/completions,
GET /health, GET /metrics (request counters, as JSON). Decoding is greedy only (temperature 0), like the
pipeline's local backend, so a served model answers exactly what the in-process one does.

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


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], lm: CausalLM, name: str, max_batch: int, batch_wait_s: float
    ):
        self.lm = lm
        self.model_name = name
        self.batcher = Batcher(lm, max_batch, batch_wait_s)
        self.metrics = Metrics()
        self.started = int(time.time())
        super().__init__(address, Handler)

    # ---- OpenAI request handling ---------------------------------------------------------------
    def _common(self, body: dict) -> tuple[int, list[str]]:
        if body.get("model") not in (None, self.model_name):
            raise RequestError(
                404, f"The model {body.get('model')!r} does not exist; this server serves {self.model_name!r}"
            )
        if float(body.get("temperature") or 0.0) != 0.0:
            raise RequestError(400, "only greedy decoding (temperature 0) is supported")
        if int(body.get("n") or 1) != 1:
            raise RequestError(400, "n must be 1")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(400, f"max_tokens must be a positive integer, not {max_tokens!r}")
        stop = body.get("stop") or []
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise RequestError(400, "stop must be a string or a list of strings")
        return max_tokens, stops

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
                isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in messages
            )
        ):
            raise RequestError(400, "messages must be a non-empty list of {role, content} objects")
        tok = self.lm.tokenizer
        if tok.chat_template:
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
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

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self.server.metrics.add(errors=1)
        self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

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
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
) -> ModelServer:
    lm = CausalLM(model, name=name or model)
    return ModelServer((host, port), lm, name or model, max_batch, batch_wait_ms / 1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved transformers model folder (or hub name)")
    parser.add_argument("--name", default="", help="the served model name (default: --model as given)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(args.model, args.name, args.host, args.port, args.max_batch, args.batch_wait_ms)
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
