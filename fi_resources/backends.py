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
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3

from fi_resources.parts import Progress, TextGenerator

if TYPE_CHECKING:
    from fi_resources.lm import CausalLM
    from fi_resources.lm.ct2 import CT2LM

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
    schema_fallbacks: int = 0  # requests resent without response_format after the server refused it (400)

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
    """A model in this process: a transformers CausalLM (GGUF files are dequantised by its loader), or its
    CTranslate2 copy (`lm.ct2.CT2LM`, the `student_engine` setting)."""

    def __init__(self, lm: CausalLM | CT2LM, batch_size: int = 16, version: str = ""):
        self.lm = lm
        self.batch_size = batch_size
        self.model_id = str(lm.path)
        self._version = version
        self.stats = BackendStats()

    @property
    def name(self) -> str:
        return self.lm.name

    @property
    def engine(self) -> str:
        """The engine: "torch" (fp32), or e.g. "ctranslate2-int8"."""
        return getattr(self.lm, "engine", "torch")

    def chat_prompt(self, user: str) -> str:
        return self.lm.chat_prompt(user)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
        schema: dict | None = None,  # no constrained JSON decoding in-process: callers parse strictly
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
        ident = {"kind": "local", "model": self.lm.name, "version": self._version, "path": str(self.lm.path)}
        if self.engine != "torch":
            # An int8 answer must never answer for fp32 (the torch key stays as it was: old caches still hit).
            ident["engine"] = self.engine
        return ident


# ---- OpenAI-compatible HTTP ----------------------------------------------------------------------
def redact_url(url: str) -> str:
    """`url` without its `user:password@` part: what may go into logs, errors and metadata."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _url_credentials(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


@dataclass
class HTTPConfig:
    """How to reach an OpenAI-compatible server (vLLM, llama.cpp server, Ollama, fi_resources.serve).

    Credentials in `base_url` (http://user:pass@host/v1) are moved to `auth` (HTTP basic auth) and removed
    from the URL, so the URL can be logged, shown and recorded.
    """

    base_url: str  # e.g. http://127.0.0.1:8000/v1 (a missing /v1 is added)
    model: str  # the served model name
    endpoint: Literal["completions", "chat"] = "completions"
    concurrency: int = 8  # requests in flight at once
    timeout_s: float = 120.0  # to connect, and the longest wait for the next bytes of an answer
    request_deadline_s: float = 120.0  # wall-clock limit of one request, the whole answer body included
    total_deadline_s: float = 600.0  # wall-clock limit of one prompt: all its attempts and backoff waits
    max_retries: int = 5  # after the first attempt, on connection errors, timeouts, 429 and 5xx
    backoff_s: float = 0.5  # first retry delay; doubles each retry, with jitter, capped at backoff_max_s
    backoff_max_s: float = 8.0
    max_response_bytes: int = 16 * 2**20  # a larger answer is an error, not a memory hog
    api_key: str = field(default="", repr=False)  # sent as a bearer token; never shown
    auth: tuple[str, str] | None = field(default=None, repr=False)  # basic auth (user:pass@ in base_url)
    temperature: float = 0.0  # greedy by default, so outputs are reproducible and cacheable
    version: str = ""  # bump when the served weights change (servers do not expose a weight hash)
    tokenizer: str = ""  # local path or hub name whose chat template chat_prompt() applies (completions mode)
    trust_remote_code: bool = False  # let `tokenizer` run code it ships (the user's explicit choice)
    extra: dict = field(default_factory=dict)  # extra request fields (e.g. {"top_p": 1})

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("HTTPConfig.base_url is empty: give the server's URL, e.g. http://host:8000/v1")
        # First of all, so that no message below can echo a password.
        credentials = _url_credentials(self.base_url)
        self.base_url = redact_url(self.base_url)
        if credentials:
            if self.api_key:
                raise ValueError(
                    f"credentials in the URL of {self.base_url} and an API key: give one of them (both would "
                    "be the Authorization header)"
                )
            self.auth = credentials
        if not self.model:
            raise ValueError(f"HTTPConfig.model is empty: name the model served at {self.base_url}")
        if self.endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', not {self.endpoint!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        for name in ("timeout_s", "request_deadline_s", "total_deadline_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {self.max_retries}")
        url = self.base_url.rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Stopped(BackendError):
    """A prompt gave up because another prompt of the same generate() call failed."""


class _Retryable(Exception):
    """One attempt failed in a way a later attempt may not (connection, timeout, cut-off answer)."""


def _os_reason(exc: BaseException) -> str:
    """The OS-level reason inside a requests/urllib3 error ("[Errno 111] Connection refused"), else its text."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    return found.group(0).strip() if found else text[:300]


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Bound the next socket read of a streamed answer (urllib3 resets it on the connection's next request)."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.001, seconds))


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
        self.model_id = f"{config.base_url}#{config.model}"  # base_url holds no credentials
        self.name = config.model
        self.stats = BackendStats()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tokenizer = None
        # Set once the server answers 400 to a response_format: later requests go without it.
        self.schema_unsupported = False

    # requests.Session is not documented as thread-safe: one per worker thread.
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            # Uncompressed answers: the body is read chunk by chunk against the request deadline.
            s.headers["Accept-Encoding"] = "identity"
            if self.config.api_key:
                s.headers["Authorization"] = f"Bearer {self.config.api_key}"
            if self.config.auth:
                s.auth = self.config.auth
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
                self._tokenizer = AutoTokenizer.from_pretrained(
                    self.config.tokenizer, trust_remote_code=self.config.trust_remote_code
                )
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

    def _without_schema(self, body: dict) -> dict:
        """A server without structured output answered 400: resend once without `response_format` (not
        counted as a retry), and remember, so later prompts are sent without it; the caller's strict parser
        still applies."""
        log.warning("%s refused response_format (HTTP 400): sending without it", self.url)
        with self._lock:
            self.schema_unsupported = True
            self.stats.schema_fallbacks += 1
            self.stats.requests += 1
        return {k: v for k, v in body.items() if k != "response_format"}

    def _body(self, prompt: str, max_new_tokens: int, stop: str | None, schema: dict | None = None) -> dict:
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
        if schema is not None and not self.schema_unsupported:
            body["response_format"] = schema  # OpenAI structured output: {"type": "json_schema", ...}
        body.update(self.config.extra)
        return body

    def _parse(self, payload: object) -> tuple[str, int]:
        try:
            if not isinstance(payload, dict):
                raise TypeError(f"the answer is a JSON {type(payload).__name__}, not an object")
            choice = payload["choices"][0]
            text = choice["text"] if self.config.endpoint == "completions" else choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
            usage = payload.get("usage") or {}
            return text, int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise BackendError(
                f"{self.url} returned a response without completion text ({exc!r}): {str(payload)[:300]}"
            ) from exc

    def _read_body(self, r: requests.Response, deadline: float) -> bytes:
        """The whole answer body, read in chunks so that a server dripping bytes meets the deadline too."""
        c = self.config
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Retryable(
                    f"request deadline of {c.request_deadline_s:g} s exceeded while reading the answer body "
                    f"({size} bytes received)"
                )
            _set_read_timeout(r, min(c.timeout_s, left))
            try:
                chunk = r.raw.read1(65536)
            except urllib3.exceptions.ReadTimeoutError as exc:
                if left <= c.timeout_s:
                    continue  # the wait was cut to the deadline: reported at the top of the loop
                raise _Retryable(f"no bytes of the answer body for {c.timeout_s:g} s (timeout_s)") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Retryable(f"the answer body broke off after {size} bytes: {_os_reason(exc)}") from exc
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > c.max_response_bytes:
                raise BackendError(
                    f"{self.url} sent an answer over max_response_bytes={c.max_response_bytes} (not retried)"
                )
            chunks.append(chunk)

    def _post(self, body: dict, deadline: float) -> tuple[int, Mapping[str, str], bytes]:
        """One attempt: status, headers and body, all within `deadline` (time.monotonic)."""
        c = self.config
        wait = min(c.timeout_s, max(0.001, deadline - time.monotonic()))
        try:
            r = self._session().post(self.url, json=body, timeout=(wait, wait), stream=True)
        except requests.ConnectTimeout as exc:
            raise _Retryable(f"connecting timed out after {wait:.3g} s") from exc
        except requests.Timeout as exc:
            raise _Retryable(f"no answer within {wait:.3g} s of sending the request") from exc
        except requests.ConnectionError as exc:
            raise _Retryable(f"connection failed: {_os_reason(exc)}") from exc
        with r:
            return r.status_code, r.headers, self._read_body(r, deadline)

    def _answer(self, data: bytes) -> str:
        try:
            payload = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = data[:300].decode("utf-8", "replace")
            raise BackendError(f"{self.url} returned malformed JSON: {text!r}") from exc
        text, tokens = self._parse(payload)
        with self._lock:
            self.stats.tokens += tokens
        return text

    def _backoff(self, attempt: int) -> float:
        # Exponential backoff with jitter, so many workers do not retry in lock-step.
        delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1))
        return random.uniform(delay / 2, delay)

    def _request(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: str | None,
        cancel: threading.Event | None = None,
        schema: dict | None = None,
    ) -> str:
        c = self.config
        body = self._body(prompt, max_new_tokens, stop, schema)
        start = time.monotonic()
        give_up = start + c.total_deadline_s
        last = ""
        wait_at_least = 0.0  # a server's Retry-After (429/503), honoured up to a minute
        attempts = 0
        cancel = cancel or threading.Event()
        for attempt in range(c.max_retries + 1):
            pause = max(wait_at_least, self._backoff(attempt)) if attempt else 0.0
            if attempt and time.monotonic() + pause >= give_up:
                break  # the wait alone would overrun the deadline: fail now
            if cancel.wait(pause):
                raise _Stopped(f"{self.url}: stopped, another prompt of this call failed")
            if attempt:
                with self._lock:
                    self.stats.retries += 1
            now = time.monotonic()
            if now >= give_up:
                break
            attempts += 1
            with self._lock:
                self.stats.requests += 1
            try:
                status, headers, data = self._post(body, now + min(c.request_deadline_s, give_up - now))
                if status == 400 and "response_format" in body:
                    body = self._without_schema(body)
                    now = time.monotonic()
                    status, headers, data = self._post(body, now + min(c.request_deadline_s, give_up - now))
            except _Retryable as exc:
                last = str(exc)
                continue
            if status in _RETRY_STATUS:
                last = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
                wait_at_least = _retry_after(headers.get("Retry-After"))
                continue
            if status != 200:
                text = data[:300].decode("utf-8", "replace")
                raise BackendError(f"{self.url} answered HTTP {status} (not retried): {text}")
            return self._answer(data)
        elapsed = time.monotonic() - start
        why = "" if attempts == c.max_retries + 1 else f" (total_deadline_s={c.total_deadline_s:g} reached)"
        raise BackendError(
            f"LLM endpoint {self.url} (model {c.model!r}) failed after {attempts} attempts in {elapsed:.1f} s"
            f"{why}; last error: {last}. Is the server running and reachable?"
        )

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
        schema: dict | None = None,  # an OpenAI response_format, sent where the server takes it
    ) -> list[str]:
        start = time.perf_counter()
        out: list[str] = [""] * len(prompts)
        done = 0
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="llm-http") as pool:
            # Set on the first failure: the other prompts stop retrying instead of each running to its deadline.
            cancel = threading.Event()
            failures: list[BaseException] = []

            def request(prompt: str) -> str:
                try:
                    return self._request(prompt, max_new_tokens, stop, cancel, schema)
                except _Stopped:
                    raise
                except BaseException as exc:
                    failures.append(exc)
                    cancel.set()  # before this worker takes the next prompt
                    raise

            futures = {pool.submit(request, p): i for i, p in enumerate(prompts)}
            try:
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    done += 1
                    if progress:
                        progress(done, len(prompts), time.perf_counter() - start)
            except BaseException as exc:
                cancel.set()
                for f in futures:
                    f.cancel()
                if isinstance(exc, _Stopped) and failures:
                    raise failures[0] from None  # the cause, not a prompt that stopped because of it
                raise
        # Servers that apply `stop` already cut there; this keeps clients of servers that ignore it identical.
        if stop:
            out = [t.split(stop)[0] for t in out]
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out
