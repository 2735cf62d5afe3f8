"""Ray as the engine of the model calls: a pool of actors, each holding one copy of a model part (a local
generation backend, the embedded judge, an encoder, the value typer), and thin stand-ins with the part's own
interface that cut a call's rows into chunks, run the chunks on the actors in parallel and join the results
in order. Stages are unchanged: they call the stand-in as they would call the part.

What stays in the calling process: the stage logic, the response cache (a chunk's answers are stored as it
comes back, so a retried or rerun chunk is never stored twice) and HTTP backends (a served model batches on
its own server; `llm_concurrency` already keeps several requests in flight).

Each actor builds its part from a picklable `builder` (a `Parts` recipe, no loaded model), so the model loads
once per actor, on the worker, on the worker's device. A chunk whose actor dies is retried on a restarted
actor (`max_restarts`, `max_task_retries`); its rows come back once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fi_resources.backends import BackendStats, Progress


@dataclass(frozen=True)
class RaySettings:
    """How many actors a part gets, what each reserves, and how many rows one call sends an actor."""

    workers: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    chunk_size: int = 64  # rows per actor call; a multiple of the parts' own batch sizes (16, 32)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.chunk_size < 1 or self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"bad Ray settings {self}: workers and chunk_size >= 1, resources >= 0")


class _Holder:
    """The actor: one model part, built on the worker."""

    def __init__(self, builder: Callable[[], object]):
        self.part = builder()

    def call(self, method: str, args: tuple, kwargs: dict) -> tuple[object, dict | None]:
        stats = getattr(self.part, "stats", None)
        before = stats.as_dict() if isinstance(stats, BackendStats) else None
        out = getattr(self.part, method)(*args, **kwargs)
        if before is None:
            return out, None
        after = self.part.stats.as_dict()
        return out, {k: after[k] - before[k] for k in ("calls", "prompts", "tokens", "seconds")}

    def attribute(self, name: str) -> object:
        return getattr(self.part, name)

    def ready(self) -> bool:
        return True


def _job_id() -> str:
    import ray

    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else ""


def connect() -> None:
    """Join the Ray cluster of this process (dagster-ray's resource connects a run's steps first); else the
    one RAY_ADDRESS names, else a new local one."""
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)


class ActorPool:
    """`settings.workers` actors holding `builder()`; thread-safe: each call takes an idle actor.

    The actors start on first use. When a pool needs more CPUs or GPUs than the cluster has free, idle pools
    of this process are released, least recently used first (a released pool starts its actors again on its
    next call): the parts of a run take turns on a small cluster instead of waiting for each other's
    reservations forever. Actors that cannot start within `ready_s` are a clear error, not a hang."""

    _live: list[ActorPool] = []  # pools of this process whose actors run
    _live_lock = threading.Lock()

    def __init__(self, builder: Callable[[], object], settings: RaySettings, name: str, ready_s: float = 900):
        self.builder, self.settings, self.name, self.ready_s = builder, settings, name, ready_s
        self._actors: list = []
        self._idle: queue.Queue = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._job = ""
        self.last_used = time.monotonic()

    def _start(self) -> None:
        import ray

        connect()
        job = ray.get_runtime_context().get_job_id()
        holder = ray.remote(
            num_cpus=self.settings.num_cpus,
            num_gpus=self.settings.num_gpus,
            max_restarts=2,
            max_task_retries=2,
        )(_Holder)
        with ActorPool._live_lock:
            # Actors die with the connection (Ray job) that made them: those of an earlier one are gone.
            ActorPool._live = [p for p in ActorPool._live if p._job == job]
            self._make_room()
            actors = [holder.remote(self.builder) for _ in range(self.settings.workers)]
            ActorPool._live.append(self)
        self._job = job
        try:
            ray.get([a.ready.remote() for a in actors], timeout=self.ready_s)
        except ray.exceptions.GetTimeoutError:
            for a in actors:
                ray.kill(a)
            with ActorPool._live_lock:
                ActorPool._live.remove(self)
            raise RuntimeError(
                f"Ray did not start {self.settings.workers} '{self.name}' actors ({self.settings.num_cpus} CPU, "
                f"{self.settings.num_gpus} GPU each) in {self.ready_s:.0f}s; the cluster has "
                f"{ray.cluster_resources()}: lower ray_workers or the resources per worker"
            ) from None
        self._actors = actors
        for a in actors:
            self._idle.put(a)

    def _make_room(self) -> None:
        """Release idle pools, least recently used first, until this pool's reservation fits."""
        import ray

        need = {"CPU": self.settings.workers * self.settings.num_cpus}
        if self.settings.num_gpus:
            need["GPU"] = self.settings.workers * self.settings.num_gpus

        def fits() -> bool:
            free = ray.available_resources()
            return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())

        for pool in sorted(ActorPool._live, key=lambda p: p.last_used):
            if fits():
                return
            if pool._busy == 0 and pool._lock.acquire(blocking=False):
                try:
                    for actor in pool._actors:
                        ray.kill(actor)
                    pool._actors, pool._idle = [], queue.Queue()
                    ActorPool._live.remove(pool)
                finally:
                    pool._lock.release()
                deadline = time.monotonic() + 10  # a killed actor's reservation comes back within moments
                while not fits() and time.monotonic() < deadline:
                    time.sleep(0.05)

    def _actor(self):
        with self._lock:
            self._busy += 1
            self.last_used = time.monotonic()
            try:
                if not self._actors or self._job != _job_id():
                    self._actors, self._idle = [], queue.Queue()
                    self._start()
            except BaseException:
                self._busy -= 1
                raise
        return self._idle.get()

    def _done(self, actor) -> None:
        self._idle.put(actor)
        with self._lock:
            self._busy -= 1

    def call(self, method: str, *args, **kwargs) -> tuple[object, dict | None]:
        import ray

        actor = self._actor()
        try:
            return ray.get(actor.call.remote(method, args, kwargs))
        finally:
            self._done(actor)

    def attribute(self, name: str) -> object:
        import ray

        actor = self._actor()
        try:
            return ray.get(actor.attribute.remote(name))
        finally:
            self._done(actor)

    def map(
        self,
        method: str,
        columns: dict[str, Sequence | None],
        kwargs: dict,
        on_chunk: Callable[[int], None] | None = None,
    ) -> list[tuple[object, dict | None]]:
        """`method(**chunk_columns, **kwargs)` on consecutive chunks of the aligned `columns` (None: passed
        as is), in parallel; results in chunk order. `on_chunk(rows)` as each chunk finishes."""
        n = len(next(c for c in columns.values() if c is not None))
        size = self.settings.chunk_size
        bounds = [(lo, min(n, lo + size)) for lo in range(0, n, size)]

        def run(lo_hi: tuple[int, int]) -> tuple[object, dict | None]:
            lo, hi = lo_hi
            chunk = {k: None if c is None else list(c[lo:hi]) for k, c in columns.items()}
            out = self.call(method, **chunk, **kwargs)
            if on_chunk:
                on_chunk(hi - lo)
            return out

        # The configured count: a pool released or not yet started has no actors until its first call.
        with ThreadPoolExecutor(max_workers=self.settings.workers) as ex:
            return list(ex.map(run, bounds))


class _ChunkProgress:
    """Turns finished chunks into the stage's (done, total, seconds) progress calls."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.progress, self.done = total, progress, 0
        self.start = time.perf_counter()
        self._lock = threading.Lock()

    def __call__(self, rows: int) -> None:
        with self._lock:
            self.done += rows
            if self.progress:
                self.progress(self.done, self.total, time.perf_counter() - self.start)


class RayBackend:
    """A local generation backend (`backends.LocalBackend`) on an actor pool: same answers, same cache key.
    `parallel_chunks` tells the response cache how many chunks it may hand over at once."""

    supports_copy_constraint = True

    def __init__(self, pool: ActorPool):
        self.pool = pool
        self.stats = BackendStats()
        self.parallel_chunks = pool.settings.workers
        identity, _ = pool.call("cache_identity")
        self._identity: dict = dict(identity)  # type: ignore[call-overload]
        self.model_id = str(pool.attribute("model_id"))
        self.name = str(pool.attribute("name"))
        self._chat_wrap: tuple[str, str] | bool | None = None
        self._lock = threading.Lock()

    def cache_identity(self) -> dict:
        return dict(self._identity)

    def chat_prompt(self, user: str) -> str:
        # A chat template wraps the user's text in a fixed prefix and suffix: learn them from an actor once
        # (checked on a probe), so prompts are not a round trip each; a template that does more is asked.
        if self._chat_wrap is None:
            marker, probe = "\x00USER\x00", " a probe,\n with spaces "
            wrapped, _ = self.pool.call("chat_prompt", marker)
            before, _, after = str(wrapped).partition(marker)
            checked, _ = self.pool.call("chat_prompt", probe)
            self._chat_wrap = (before, after) if checked == before + probe + after else False
        if self._chat_wrap is False:
            return str(self.pool.call("chat_prompt", user)[0])
        before, after = self._chat_wrap
        return before + user + after

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
        schema: dict | None = None,
    ) -> list[str]:
        if not prompts:
            return []
        params = {"max_new_tokens": max_new_tokens, "stop": stop}
        results = self.pool.map(
            "generate",
            {"prompts": prompts, "copy_sources": copy_sources},
            params,
            _ChunkProgress(len(prompts), progress),
        )
        out: list[str] = []
        with self._lock:
            self.stats.calls += 1
            for texts, delta in results:
                out.extend(texts)  # type: ignore[arg-type]
                if delta:
                    self.stats.prompts += int(delta["prompts"])
                    self.stats.tokens += int(delta["tokens"])
                    self.stats.seconds += float(delta["seconds"])
        return out


class RayJudge:
    """The embedded judge on an actor pool: pairs are scored chunk by chunk, rows joined in order."""

    def __init__(self, pool: ActorPool):
        self.pool = pool
        self.name = str(pool.attribute("name"))

    def score(
        self,
        instructions: Sequence[str],
        answers: Sequence[str],
        progress: Progress | None = None,
        templates: Sequence[str] | None = None,
    ) -> list[dict]:
        if templates is not None and len(templates) != len(instructions):
            raise ValueError("templates and instructions differ in length")
        if not instructions:
            return []
        results = self.pool.map(
            "score",
            {"instructions": instructions, "answers": answers, "templates": templates},
            {},
            _ChunkProgress(len(instructions), progress),
        )
        return [row for rows, _ in results for row in rows]  # type: ignore[union-attr]


class RayEncoder:
    """An encoder's inference on an actor pool (`encode`, `encode_multi`). Texts go out longest first, in
    chunks that are whole batches of the encoder's own, so each batch is the one it would form alone."""

    def __init__(self, pool: ActorPool):
        self.pool = pool
        self.dim = int(pool.attribute("dim"))
        self.num_local = int(pool.attribute("num_local"))
        self.name = str(pool.attribute("name"))

    def _map(self, method: str, texts: Sequence[str], empty_shape: tuple[int, ...]) -> np.ndarray:
        if not texts:
            return np.zeros(empty_shape, dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        results = self.pool.map(method, {"texts": [texts[i] for i in order]}, {})
        sorted_out = np.concatenate([arr for arr, _ in results])  # type: ignore[misc]
        out = np.empty_like(sorted_out)
        out[order] = sorted_out
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._map("encode", texts, (0, self.dim))

    def encode_multi(self, texts: Sequence[str]) -> np.ndarray:
        return self._map("encode_multi", texts, (0, self.num_local + 1, self.dim))


class RayTyper:
    """The value typer on an actor pool: distinct values typed chunk by chunk, the score maps merged."""

    def __init__(self, pool: ActorPool):
        self.pool = pool

    def scores(self, values: Sequence[str], extra_nouns: Sequence[str] = ()) -> dict[str, dict[str, float]]:
        unique = list(dict.fromkeys(values))
        if not unique:
            return {}
        merged: dict[str, dict[str, float]] = {}
        for found, _ in self.pool.map("scores", {"values": unique}, {"extra_nouns": list(extra_nouns)}):
            merged.update(found)  # type: ignore[arg-type]
        return merged
