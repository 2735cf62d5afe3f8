"""A persistent response cache for LLM backends, so a rerun of finished work makes no model call.

Key = sha256 of (backend kind, model name, model version, endpoint settings, prompt, max_new_tokens, stop).
Storage is one SQLite file under the data home ($FI_HOME/cache/responses.sqlite). Unlike DuckDB (see
warehouse.py), SQLite lets several processes write one file: each write is a short `BEGIN IMMEDIATE`
transaction, WAL mode lets readers run beside it, and a busy timeout makes a blocked writer wait instead of
failing. Dagster runs partitions in parallel processes, so this matters.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fi_resources.backends import Backend, BackendStats, Progress

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    digest TEXT NOT NULL
);
"""

_MEMO: dict[tuple[str, str], str] = {}


def _signature(folder: Path) -> tuple[list[Path], str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    sig = hashlib.sha256()
    for p in files:
        st = p.stat()
        sig.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return files, sig.hexdigest()


def folder_fingerprint(folder: str | Path, cache: ResponseCache | None = None) -> str:
    """Content hash of a model folder (or file), memoised by (names, sizes, mtimes) in-process and in `cache`.

    Hashing SmolLM2's 517 MB takes ~0.7 s; the memo makes it once per model, not once per process.
    """
    folder = Path(folder).resolve()
    if folder.is_file():
        files, sig = (
            [folder],
            hashlib.sha256(f"{folder.stat().st_size}\0{folder.stat().st_mtime_ns}".encode()).hexdigest(),
        )
        root = folder.parent
    elif folder.is_dir():
        files, sig = _signature(folder)
        root = folder
    else:
        raise FileNotFoundError(f"model folder {folder} does not exist")
    memo_key = (str(folder), sig)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    digest = cache.stored_fingerprint(str(folder), sig) if cache else None
    if digest is None:
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        digest = h.hexdigest()[:16]
        if cache:
            cache.store_fingerprint(str(folder), sig, digest)
    _MEMO[memo_key] = digest
    return digest


class ResponseCache:
    """(key → response) in SQLite; safe for several threads and processes."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        con = self._connect()
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread and process (never shared across threads or a fork), kept open: closing
        # the last WAL connection checkpoints the log, ~10 ms a time.
        con = getattr(self._local, "con", None)
        if con is None or self._local.pid != os.getpid():
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            # WAL + NORMAL: a commit survives a crashed process; a power cut may lose the last ones (a cache
            # can regenerate them), and commits skip an fsync each.
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con, self._local.pid = con, os.getpid()
        return con

    @staticmethod
    def key(identity: dict, prompt: str, params: dict) -> str:
        blob = json.dumps({"backend": identity, "prompt": prompt, "params": params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        con = self._connect()
        for i in range(0, len(unique), 500):  # SQLite caps bound parameters per statement
            chunk = unique[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(con.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk))
        return out

    def put_many(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Store (key, model, response) rows in one short write transaction."""
        rows = [(k, m, r, time.time()) for k, m, r in rows]
        if not rows:
            return
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT OR REPLACE INTO responses VALUES (?,?,?,?)", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        con = self._connect()
        return int(con.execute("SELECT count(*) FROM responses").fetchone()[0])

    def stored_fingerprint(self, path: str, signature: str) -> str | None:
        con = self._connect()
        row = con.execute(
            "SELECT digest FROM fingerprints WHERE path = ? AND signature = ?", (path, signature)
        ).fetchone()
        return row[0] if row else None

    def store_fingerprint(self, path: str, signature: str, digest: str) -> None:
        con = self._connect()
        con.execute("INSERT OR REPLACE INTO fingerprints VALUES (?,?,?)", (path, signature, digest))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # prompts not in the cache (duplicates within one call count once)
    model_calls: int = 0  # prompts sent to the model

    def as_dict(self) -> dict:
        return {"cache_hits": self.hits, "cache_misses": self.misses, "model_calls": self.model_calls}


class CachedBackend:
    """Wraps a backend: answers cached prompts from the cache, generates the rest in chunks, stores each chunk
    as soon as it is done (so a crash mid-asset keeps the finished chunks)."""

    def __init__(self, inner: Backend, cache: ResponseCache, chunk_size: int = 64):
        self.inner = inner
        self.cache = cache
        self.chunk_size = max(1, chunk_size)
        self.cache_stats = CacheStats()
        self._identity: dict | None = None
        self._lock = threading.Lock()

    # Delegation: the wrapped backend's name, stats, chat template, tokenizer (local models).
    def __getattr__(self, name: str):
        if name == "inner":  # not set yet (copying, unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def stats(self) -> BackendStats:
        return self.inner.stats

    def chat_prompt(self, user: str) -> str:
        return self.inner.chat_prompt(user)

    def identity(self) -> dict:
        if self._identity is None:
            ident = dict(self.inner.cache_identity())
            path = ident.pop("path", None)
            if not ident.get("version") and path:
                ident["version"] = folder_fingerprint(path, self.cache)
            self._identity = ident
        return self._identity

    def cache_identity(self) -> dict:
        return self.identity()

    @property
    def supports_copy_constraint(self) -> bool:
        return getattr(self.inner, "supports_copy_constraint", False)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        stop: str | None = None,
        progress: Progress | None = None,
        copy_sources: Sequence[str] | None = None,
        schema: dict | None = None,
    ) -> list[str]:
        start = time.perf_counter()
        ident = self.identity()
        params: dict = {"max_new_tokens": max_new_tokens, "stop": stop}
        if schema is not None:
            params["schema"] = schema  # a schema-constrained answer differs from a free one
        constrained = copy_sources is not None and self.supports_copy_constraint
        if constrained:
            params["copy_constrained"] = True  # the source is in the prompt; the flag changes the output
        keys = [self.cache.key(ident, p, params) for p in prompts]
        source_of = dict(zip(keys, copy_sources, strict=True)) if constrained else {}
        found = self.cache.get_many(keys)
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        prompt_of = dict(zip(keys, prompts, strict=True))
        with self._lock:
            self.cache_stats.hits += sum(k in found for k in keys)
            self.cache_stats.misses += len(todo)
        missing = set(todo)
        total, have = len(prompts), sum(k not in missing for k in keys)
        if progress and have:
            progress(have, total, time.perf_counter() - start)
        model = ident.get("model", self.model_id)
        # Similar lengths in one chunk waste less on padding (local batches are cut from a chunk).
        todo.sort(key=lambda k: len(prompt_of[k]))
        chunks = [todo[c : c + self.chunk_size] for c in range(0, len(todo), self.chunk_size)]
        # A backend on several workers (`ray_engine.RayBackend`) takes that many chunks at once.
        parallel = max(1, int(getattr(self.inner, "parallel_chunks", 1)))

        def run(chunk: list[str]) -> None:
            nonlocal have  # prompts answered so far, as chunks finish (in any order when parallel)

            def inner_progress(done: int, _n: int, _s: float) -> None:
                if progress:
                    progress(min(total - 1, have + done), total, time.perf_counter() - start)

            extra: dict = {"copy_sources": [source_of[k] for k in chunk]} if constrained else {}
            if schema is not None:
                extra["schema"] = schema
            texts = self.inner.generate(
                [prompt_of[k] for k in chunk],
                max_new_tokens=max_new_tokens,
                stop=stop,
                progress=None if parallel > 1 else inner_progress,
                **extra,
            )
            self.cache.put_many((k, model, t) for k, t in zip(chunk, texts, strict=True))
            members = set(chunk)
            with self._lock:
                found.update(zip(chunk, texts, strict=True))
                self.cache_stats.model_calls += len(chunk)
                have += sum(k in members for k in keys)
                if progress:
                    progress(have, total, time.perf_counter() - start)

        if parallel > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=parallel) as ex:
                list(ex.map(run, chunks))
        else:
            for chunk in chunks:
                run(chunk)
        return [found[k] for k in keys]
