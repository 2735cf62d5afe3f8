"""LLM generation backends behind one interface: a local transformers model or any OpenAI-compatible server.

Every role that generates text (teacher completions, student genericizer/instantiator, a generative judge)
calls `backend.generate(prompts, max_new_tokens, stop)`, so a profile swaps an in-process model for a
vLLM / llama.cpp / Ollama endpoint without touching an asset. `CachedBackend` (fi_resources/cache.py) wraps
any backend so a rerun of finished work makes no model call.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import requests

from fi_resources.parts import Progress, TextGenerator

if TYPE_CHECKING:
    from fi_resources.lm import CausalLM

log = logging.getLogger(__name__)


@dataclass
class BackendStats:
    """What a backend did: generate() calls, prompts sent to the model, new tokens, wall seconds."""

    calls: int = 0
    prompts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    requests: int = 0  # HTTP requests (retries included); 0 for local models
    retries: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 1)}


class Backend(TextGenerator, Protocol):
    """A text generator as the pipeline runs it: named, counted and cacheable."""

    model_id: str  # names the model (path or served name) for logs, lineage and the cache key
    stats: BackendStats

    def cache_identity(self) -> dict: ...


class BackendError(RuntimeError):
    """A backend could not produce completions (endpoint down, bad response)."""


# ---- local ----------------------------------------------------------------------------------------
class LocalBackend:
    """A transformers model in this process (CausalLM; GGUF files are dequantised by its loader)."""

    def __init__(self, lm: CausalLM, batch_size: int = 16, version: str = ""):
        self.lm = lm
        self.batch_size = batch_size
        self.model_id = str(lm.path)
        self._version = version
        self.stats = BackendStats()

    @property
    def name(self) -> str:
        return self.lm.name

    def chat_prompt(self, user: str) -> str:
        return self.lm.chat_prompt(user)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
    ) -> list[str]:
        start = time.perf_counter()
        before = self.lm.stats.new_tokens
        out = self.lm.generate(
            list(prompts),
            max_new_tokens=max_new_tokens,
            batch_size=self.batch_size,
            stop=stop,
            progress=progress,
            copy_sources=copy_sources,
        )
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.tokens += self.lm.stats.new_tokens - before
        self.stats.seconds += time.perf_counter() - start
        return out

    supports_copy_constraint = True

    def cache_identity(self) -> dict:
        # No explicit version: CachedBackend hashes the weights at `path` (a retrained student at the same
        # path must not hit old answers).
        return {"kind": "local", "model": self.lm.name, "version": self._version, "path": str(self.lm.path)}


# ---- OpenAI-compatible HTTP ----------------------------------------------------------------------
@dataclass
class HTTPConfig:
    """How to reach an OpenAI-compatible server (vLLM, llama.cpp server, Ollama, fi_resources.serve)."""

    base_url: str  # e.g. http://127.0.0.1:8000/v1 (a missing /v1 is added)
    model: str  # the served model name
    endpoint: Literal["completions", "chat"] = "completions"
    concurrency: int = 8  # requests in flight at once
    timeout_s: float = 120.0  # per request: to connect, and between bytes of the answer
    max_retries: int = 5  # after the first attempt, on connection errors, timeouts, 429 and 5xx
    backoff_s: float = 0.5  # first retry delay; doubles each retry, with jitter, capped at backoff_max_s
    backoff_max_s: float = 8.0
    api_key: str = ""
    temperature: float = 0.0  # greedy by default, so outputs are reproducible and cacheable
    version: str = ""  # bump when the served weights change (servers do not expose a weight hash)
    tokenizer: str = ""  # local path or hub name whose chat template chat_prompt() applies (completions mode)
    extra: dict = field(default_factory=dict)  # extra request fields (e.g. {"top_p": 1})

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("HTTPConfig.base_url is empty: give the server's URL, e.g. http://host:8000/v1")
        if not self.model:
            raise ValueError(f"HTTPConfig.model is empty: name the model served at {self.base_url}")
        if self.endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', not {self.endpoint!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        url = self.base_url.rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _retry_after(value: str | None, cap_s: float = 60.0) -> float:
    """Seconds from a Retry-After header given in seconds (HTTP dates are ignored: backoff applies)."""
    try:
        return min(cap_s, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0


class HTTPBackend:
    """Completions from an OpenAI-compatible server: one prompt per request, `concurrency` requests at once.

    `/v1/completions` sends the raw prompt (fine-tuned students were trained on raw prompts); `/v1/chat/
    completions` sends each prompt as one user message and lets the server apply the chat template.
    """

    # A server decodes on its own: excerpt markers cannot be copy-constrained from here.
    supports_copy_constraint = False

    def __init__(self, config: HTTPConfig):
        self.config = config
        self.model_id = f"{config.base_url}#{config.model}"
        self.name = config.model
        self.stats = BackendStats()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tokenizer = None

    # requests.Session is not documented as thread-safe: one per worker thread.
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            if self.config.api_key:
                s.headers["Authorization"] = f"Bearer {self.config.api_key}"
            self._local.session = s
        return s

    @property
    def url(self) -> str:
        path = "completions" if self.config.endpoint == "completions" else "chat/completions"
        return f"{self.config.base_url}/{path}"

    def chat_prompt(self, user: str) -> str:
        """A chat-formatted raw prompt (for prefix-forced completions). Chat mode sends `user` as is."""
        if self.config.endpoint == "chat":
            return user
        if not self.config.tokenizer:
            raise BackendError(
                f"chat_prompt() for {self.model_id} needs the model's chat template: set the backend's "
                "tokenizer (a local path or hub name), or use endpoint='chat'"
            )
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.config.tokenizer)
            except OSError as exc:
                raise BackendError(f"cannot load tokenizer {self.config.tokenizer!r}: {exc}") from exc
        if not self._tokenizer.chat_template:
            return user + "\n"
        return self._tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )

    def cache_identity(self) -> dict:
        c = self.config
        return {
            "kind": "http",
            "model": c.model,
            "version": c.version,
            "endpoint": c.endpoint,
            "temperature": c.temperature,
            **c.extra,
        }

    def _body(self, prompt: str, max_new_tokens: int, stop: str | None) -> dict:
        body: dict = {
            "model": self.config.model,
            "max_tokens": max_new_tokens,
            "temperature": self.config.temperature,
        }
        if self.config.endpoint == "completions":
            body["prompt"] = prompt
        else:
            body["messages"] = [{"role": "user", "content": prompt}]
        if stop:
            body["stop"] = [stop]
        body.update(self.config.extra)
        return body

    def _parse(self, payload: object) -> tuple[str, int]:
        try:
            choice = payload["choices"][0]  # type: ignore[index]
            text = choice["text"] if self.config.endpoint == "completions" else choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
            usage = payload.get("usage") or {}  # type: ignore[union-attr]
            return text, int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"{self.url} returned a response without completion text ({exc!r}): {str(payload)[:300]}"
            ) from exc

    def _request(self, prompt: str, max_new_tokens: int, stop: str | None) -> str:
        c = self.config
        body = self._body(prompt, max_new_tokens, stop)
        last: str = ""
        wait_at_least = 0.0
        for attempt in range(c.max_retries + 1):
            if attempt:
                # Exponential backoff with jitter, so many workers do not retry in lock-step; a server's
                # Retry-After (429/503) is honoured up to a minute.
                delay = min(c.backoff_max_s, c.backoff_s * 2 ** (attempt - 1))
                time.sleep(max(wait_at_least, random.uniform(delay / 2, delay)))
                with self._lock:
                    self.stats.retries += 1
            with self._lock:
                self.stats.requests += 1
            try:
                r = self._session().post(self.url, json=body, timeout=c.timeout_s)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if r.status_code in _RETRY_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                wait_at_least = _retry_after(r.headers.get("Retry-After"))
                continue
            if r.status_code != 200:
                raise BackendError(f"{self.url} answered HTTP {r.status_code} (not retried): {r.text[:300]}")
            try:
                payload = r.json()
            except (json.JSONDecodeError, ValueError) as exc:
                raise BackendError(f"{self.url} returned malformed JSON: {r.text[:300]!r}") from exc
            text, tokens = self._parse(payload)
            with self._lock:
                self.stats.tokens += tokens
            return text
        raise BackendError(
            f"LLM endpoint {self.url} (model {c.model!r}) failed after {c.max_retries + 1} attempts; "
            f"last error: {last}. Is the server running and reachable?"
        )

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
    ) -> list[str]:
        start = time.perf_counter()
        out: list[str] = [""] * len(prompts)
        done = 0
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="llm-http") as pool:
            futures = {pool.submit(self._request, p, max_new_tokens, stop): i for i, p in enumerate(prompts)}
            try:
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    done += 1
                    if progress:
                        progress(done, len(prompts), time.perf_counter() - start)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        # Servers that apply `stop` already cut there; this keeps clients of servers that ignore it identical.
        if stop:
            out = [t.split(stop)[0] for t in out]
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out
