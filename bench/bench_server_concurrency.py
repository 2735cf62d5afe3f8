"""Requests in flight against the project's own server: `python -m fi_resources.serve` with the embedded model,
driven through the pipeline's own client (`HTTPBackend`) at 1, 8 and 32 concurrent requests, same run.

Workload: the first `--prompts` of ../shared/bench/generation_prompts.jsonl, sent to /v1/chat/completions
(the server applies SmolLM2-135M-Instruct's chat template, as bench_generation.py does), greedy,
max_tokens=16 (the 32 prompts are 98-196 tokens with the template, mean 142). The server is a subprocess
on 127.0.0.1 (a port the OS picks), started once, warmed up with one request, and terminated at the end.
The bare `HTTPBackend` has no response cache (that is `CachedBackend`'s job, not used here) and the server
keeps none, so every level decodes every prompt.

Per level: requests, wall seconds, requests/s, completion tokens/s (the server's `usage` counts, as the
backend adds them up), the server's peak requests in flight and mean batch size (from GET /metrics, peak
reset before each level), the ratio of requests/s to concurrency 1 measured in the same run, and how many
completions are identical to concurrency 1's.

    .venv/bin/python bench/bench_server_concurrency.py [--prompts 32] [--max-tokens 16] [--levels 1,8,32]
        [--max-batch 16] [--batch-wait-ms 5]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402
from bench_generation import MAX_NEW, WORKLOAD  # noqa: E402  (the script folder is on sys.path)

from fi_resources.backends import HTTPBackend, HTTPConfig  # noqa: E402
from fi_resources.lm import materialize_smollm2  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2"


class ServerFailed(RuntimeError):
    pass


def start_server(model: Path, max_batch: int, batch_wait_ms: float, timeout_s: float) -> tuple:
    """The server subprocess and its base URL, once it listens; ServerFailed with its last output otherwise."""
    cmd = [sys.executable, "-m", "fi_resources.serve", "--model", str(model), "--name", NAME,
           "--host", "127.0.0.1", "--port", "0", "--max-batch", str(max_batch),
           "--batch-wait-ms", str(batch_wait_ms)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's packages, not another's
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: deque[str] = deque(maxlen=30)
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # reads to the end, so the server never blocks on a full pipe
        for line in proc.stdout:
            lines.append(line)
            if not ready.is_set() and line.startswith("serving "):
                found.append(line.rsplit(" on ", 1)[1].strip())
                ready.set()
        ready.set()  # exited before it served

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(timeout_s) or not found:
        stop_server(proc)
        why = (
            f"exited with {proc.returncode}"
            if proc.returncode is not None
            else f"not ready in {timeout_s:g}s"
        )
        raise ServerFailed(f"the server did not start ({why}): {' '.join(cmd)}\n" + "".join(lines))
    url = found[0]
    for _ in range(100):  # listening already; make sure it answers
        try:
            if requests.get(url.removesuffix("/v1") + "/health", timeout=5).ok:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop_server(proc)
    raise ServerFailed(f"the server at {url} does not answer /health\n" + "".join(lines))


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metrics(url: str, reset_peak: bool = False) -> dict:
    query = "?reset_peak=1" if reset_peak else ""
    return requests.get(url.removesuffix("/v1") + "/metrics" + query, timeout=30).json()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default=str(WORKLOAD))
    parser.add_argument("--prompts", type=int, default=32, help="the same prompts at every level")
    parser.add_argument(
        "--max-tokens", type=int, default=16, help=f"new tokens per prompt (the workload's: {MAX_NEW})"
    )
    parser.add_argument("--levels", default="1,8,32", help="requests in flight (HTTPConfig.concurrency)")
    parser.add_argument(
        "--max-batch", type=int, default=16, help="the server's --max-batch (its default: 16)"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's --batch-wait-ms")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the server")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rows = [json.loads(line) for line in Path(args.workload).read_text(encoding="utf8").splitlines()]
    prompts = [r["prompt"] for r in rows[: args.prompts]]
    model = materialize_smollm2(default_home() / "cache" / "smollm2-135m-instruct")
    try:
        proc, url = start_server(model, args.max_batch, args.batch_wait_ms, args.start_timeout)
    except ServerFailed as exc:
        sys.exit(f"bench_server_concurrency: {exc}")
    try:
        # No retries and long limits: a queued request waits for the batch ahead of it (2 loaded cores are slow).
        cfg = dict(base_url=url, model=NAME, endpoint="chat", max_retries=0, timeout_s=900.0)
        cfg.update(request_deadline_s=900.0, total_deadline_s=900.0)
        HTTPBackend(HTTPConfig(**cfg, concurrency=1)).generate(prompts[:1], 4)  # warm-up
        print(
            f"server {url}: max_batch {args.max_batch}, batch_wait_ms {args.batch_wait_ms:g}; "
            f"prompts: {len(prompts)}  max_tokens: {args.max_tokens}  chat endpoint, greedy, no cache"
        )
        results = {}
        for level in levels:
            backend = HTTPBackend(HTTPConfig(**cfg, concurrency=level))  # fresh stats; no cache
            before = metrics(url, reset_peak=True)
            start = time.perf_counter()
            out = backend.generate(prompts, args.max_tokens)
            wall = time.perf_counter() - start
            after = metrics(url)
            batches = after["batches"] - before["batches"]
            batched = after["batched_prompts"] - before["batched_prompts"]
            results[level] = {
                "out": out,
                "wall": wall,
                "requests": backend.stats.requests,
                "tokens": backend.stats.tokens,
                "server_tokens": after["completion_tokens"] - before["completion_tokens"],
                "max_in_flight": after["max_in_flight"],
                "mean_batch": batched / batches if batches else 0.0,
                "batches": batches,
            }
            r = results[level]
            print(
                f"  concurrency {level:3d}: {r['requests']} requests in {wall:6.1f}s, "
                f"{r['tokens']} completion tokens (server counted {r['server_tokens']}), "
                f"{r['batches']} batches"
            )
        base = results[levels[0]]
        base_rps = base["requests"] / base["wall"]
        print(f"\nratios vs concurrency {levels[0]} measured in this run")
        print(
            f"{'in flight':>9} {'requests':>8} {'wall s':>7} {'req/s':>6} {'tok/s':>6} "
            f"{'max in flight':>13} {'mean batch':>10} {'ratio':>6} {'identical':>9}"
        )
        for level in levels:
            r = results[level]
            rps = r["requests"] / r["wall"]
            same = sum(a == b for a, b in zip(r["out"], base["out"], strict=True))
            print(
                f"{level:9d} {r['requests']:8d} {r['wall']:7.1f} {rps:6.2f} {r['tokens'] / r['wall']:6.1f} "
                f"{r['max_in_flight']:13d} {r['mean_batch']:10.1f} {rps / base_rps:5.2f}x "
                f"{same:>4d}/{len(prompts)}"
            )
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
