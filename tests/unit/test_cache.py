"""The response cache and the cached backend, with a counting fake model (no real model, no network)."""

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from fi_resources.backends import BackendStats
from fi_resources.cache import CachedBackend, ResponseCache, folder_fingerprint


class EchoBackend:
    """Answers `prompt[::-1]` truncated to max_new_tokens characters; counts what it was asked."""

    def __init__(self, version: str = "v1", fail_on_call: int | None = None):
        self.model_id = "echo"
        self.stats = BackendStats()
        self.version = version
        self.fail_on_call = fail_on_call
        self.seen: list[str] = []

    def chat_prompt(self, user: str) -> str:
        return f"<user>{user}</user>"

    def cache_identity(self) -> dict:
        return {"kind": "fake", "model": "echo", "version": self.version}

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None):
        self.stats.calls += 1
        if self.fail_on_call == self.stats.calls:
            raise RuntimeError("model crashed")
        self.stats.prompts += len(prompts)
        self.seen.extend(prompts)
        out = [p[::-1][:max_new_tokens] for p in prompts]
        return [t.split(stop)[0] for t in out] if stop else out


def test_rerun_is_answered_from_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    prompts = [f"prompt number {i}" for i in range(10)] + ["prompt number 3"]  # one duplicate
    first = CachedBackend(EchoBackend(), cache)
    out1 = first.generate(prompts, max_new_tokens=8)
    assert out1 == [p[::-1][:8] for p in prompts]
    assert first.cache_stats.as_dict() == {"cache_hits": 0, "cache_misses": 10, "model_calls": 10}
    # A new process would build a new backend: only the SQLite file is shared.
    inner = EchoBackend()
    second = CachedBackend(inner, ResponseCache(tmp_path / "responses.sqlite"))
    assert second.generate(prompts, max_new_tokens=8) == out1
    assert second.cache_stats.as_dict() == {"cache_hits": 11, "cache_misses": 0, "model_calls": 0}
    assert inner.stats.calls == 0 and len(cache) == 10


def test_parameters_and_model_version_are_part_of_the_key(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    CachedBackend(EchoBackend(), cache).generate(["a b c d e f"], max_new_tokens=4)
    for backend, kwargs in [
        (CachedBackend(EchoBackend(), cache), {"max_new_tokens": 5}),
        (CachedBackend(EchoBackend(), cache), {"max_new_tokens": 4, "stop": " "}),
        (CachedBackend(EchoBackend(version="v2"), cache), {"max_new_tokens": 4}),
    ]:
        backend.generate(["a b c d e f"], **kwargs)
        assert backend.cache_stats.model_calls == 1, kwargs
    assert len(cache) == 4


def test_finished_chunks_survive_a_crash(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    prompts = [f"p{i:02d}" for i in range(10)]
    crashing = CachedBackend(EchoBackend(fail_on_call=3), cache, chunk_size=4)
    with pytest.raises(RuntimeError, match="crashed"):
        crashing.generate(prompts)
    assert len(cache) == 8  # two chunks of 4 were stored before the third call failed
    inner = EchoBackend()
    resumed = CachedBackend(inner, cache, chunk_size=4)
    assert resumed.generate(prompts) == [p[::-1] for p in prompts]
    assert resumed.cache_stats.model_calls == 2 and len(inner.seen) == 2


def test_progress_reaches_the_total(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    CachedBackend(EchoBackend(), cache).generate(["x1", "x2"])
    seen = []
    CachedBackend(EchoBackend(), cache, chunk_size=2).generate(
        ["x1", "x2", "y1", "y2", "y3"], progress=lambda d, n, s: seen.append((d, n))
    )
    assert seen[0] == (2, 5) and seen[-1] == (5, 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_delegates_name_and_chat_prompt(tmp_path):
    backend = CachedBackend(EchoBackend(), ResponseCache(tmp_path / "r.sqlite"))
    assert backend.chat_prompt("hi") == "<user>hi</user>"
    assert backend.version == "v1" and backend.model_id == "echo"


def _writer(path: str, worker: int, n: int) -> None:
    cache = ResponseCache(path, busy_timeout_s=30)
    for i in range(n):
        cache.put_many([(f"{worker}-{i}", "m", f"text {worker} {i}")])


def test_parallel_processes_can_write(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResponseCache(path)
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 120
    assert cache.get_many(["2-39", "0-0", "missing"]) == {"2-39": "text 2 39", "0-0": "text 0 0"}


def test_fingerprint_follows_content(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00" * 1000)
    (folder / "config.json").write_text("{}")
    cache = ResponseCache(tmp_path / "r.sqlite")
    a = folder_fingerprint(folder, cache)
    assert folder_fingerprint(folder, cache) == a
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert folder_fingerprint(copy) == a  # same weights elsewhere: same version
    time.sleep(0.05)  # file times tick with the kernel's coarse clock (a few ms)
    (folder / "weights.bin").write_bytes(b"\x01" * 1000)  # retrained in place
    assert folder_fingerprint(folder, cache) != a
    with pytest.raises(FileNotFoundError):
        folder_fingerprint(Path(tmp_path / "nope"))


class CopyingEchoBackend(EchoBackend):
    """An echo backend that decodes under a copy constraint: it answers with the prompt's source text."""

    supports_copy_constraint = True

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None, copy_sources=None):
        if copy_sources is None:
            return super().generate(prompts, max_new_tokens, stop, progress)
        self.stats.calls += 1
        self.seen.extend(prompts)
        return [s[:max_new_tokens] for s in copy_sources]


def test_copy_constrained_calls_are_keyed_apart_and_get_their_own_sources(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    prompts = ["doc one: rivers", "doc two: cats", "doc one: rivers"]
    sources = ["rivers flow", "cats sleep", "rivers flow"]
    inner = CopyingEchoBackend()
    backend = CachedBackend(inner, cache, chunk_size=1)  # one prompt per call: sources must follow keys
    assert backend.supports_copy_constraint
    assert backend.generate(prompts, copy_sources=sources) == sources
    assert backend.generate(prompts) == [p[::-1] for p in prompts]  # not answered from the constrained run
    assert inner.stats.calls == 4 and len(cache) == 4
    again = CachedBackend(CopyingEchoBackend(), cache)
    assert again.generate(prompts, copy_sources=sources) == sources
    assert again.cache_stats.model_calls == 0
    # A backend that cannot constrain is asked without sources, and its answers are keyed as unconstrained.
    plain = CachedBackend(EchoBackend(), cache)
    assert not plain.supports_copy_constraint
    assert plain.generate(prompts[:1], copy_sources=sources[:1]) == [prompts[0][::-1]]
    assert plain.cache_stats.model_calls == 0
