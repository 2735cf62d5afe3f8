"""Generation throughput on the fixed workload: batched vs one-at-a-time, same model, same run.

Workload: ../shared/bench/generation_prompts.jsonl (64 prompts), SmolLM2-135M-Instruct dequantised to
fp32, chat template applied, greedy, max_new_tokens=48 (performance.md). Prints output tokens/s of each
mode, the ratio, and whether the outputs are identical.

    .venv/bin/python bench/bench_generation.py [--prompts N] [--batch-size 16]
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fi_resources.lm import CausalLM, materialize_smollm2  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402

WORKLOAD = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "generation_prompts.jsonl"


def run(lm: CausalLM, prompts: list[str], batch_size: int) -> tuple[list[str], float, int]:
    before = lm.stats.new_tokens
    start = time.perf_counter()
    out = lm.generate(prompts, max_new_tokens=48, batch_size=batch_size)
    return out, time.perf_counter() - start, lm.stats.new_tokens - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default=str(WORKLOAD))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.workload).read_text(encoding="utf8").splitlines()][
        : args.prompts
    ]
    lm = CausalLM(materialize_smollm2(default_home() / "cache" / "smollm2-135m-instruct"))
    prompts = [lm.chat_prompt(r["prompt"]) for r in rows]
    lm.generate(prompts[:2], max_new_tokens=4)  # warm-up
    single, t1, n1 = run(lm, prompts, 1)
    batched, tb, nb = run(lm, prompts, args.batch_size)
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    print(f"prompts: {len(prompts)}  max_new_tokens: 48  greedy")
    print(f"one at a time : {n1:5d} tokens in {t1:6.1f}s = {n1 / t1:6.1f} tok/s")
    print(f"batch of {args.batch_size:<4d}: {nb:5d} tokens in {tb:6.1f}s = {nb / tb:6.1f} tok/s")
    print(f"ratio batched / one-at-a-time: {(nb / tb) / (n1 / t1):.2f}x")
    print(f"identical outputs: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
