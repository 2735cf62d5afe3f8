"""Generation throughput on the fixed workload: one-at-a-time `generate`, batched `generate`, and our decode
loop, same model, same run, interleaved rounds, medians.

Workload: ../shared/bench/generation_prompts.jsonl (64 prompts), SmolLM2-135M-Instruct dequantised to
fp32, chat template applied, greedy, max_new_tokens=48 (performance.md). Prints output tokens/s of each
mode, its ratio to one-at-a-time measured in the same round, and how many outputs are token-for-token
identical to one-at-a-time greedy `generate`.

    .venv/bin/python bench/bench_generation.py [--prompts 64] [--rounds 3] [--batch-size 16] [--ours 16,64]
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from fi_resources.lm import CausalLM, materialize_smollm2  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402

# shared/bench/ sits next to the repository (or a parent of a worktree): take the nearest one.
WORKLOAD = next(
    (
        p / "shared" / "bench" / "generation_prompts.jsonl"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "bench" / "generation_prompts.jsonl").exists()
    ),
    Path("generation_prompts.jsonl"),
)
MAX_NEW = 48


def strip(lm: CausalLM, row: list[int]) -> list[int]:
    return [t for t in row if t != lm.tokenizer.pad_token_id and t not in lm._eos_ids]


def run(lm: CausalLM, ids: list[list[int]], mode: str, batch_size: int) -> tuple[list[list[int]], float]:
    start = time.perf_counter()
    if mode == "hf":
        rows = lm._hf_token_ids(ids, MAX_NEW, batch_size, None, start)
    else:
        rows = lm.greedy_token_ids(ids, MAX_NEW, batch_size)
    return [strip(lm, r) for r in rows], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default=str(WORKLOAD))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of transformers generate")
    parser.add_argument("--ours", default="16,64", help="batch sizes of our decode loop, comma-separated")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.workload).read_text(encoding="utf8").splitlines()][
        : args.prompts
    ]
    lm = CausalLM(materialize_smollm2(default_home() / "cache" / "smollm2-135m-instruct"))
    ids = [lm.tokenizer(lm.chat_prompt(r["prompt"]))["input_ids"] for r in rows]
    lm.greedy_token_ids(ids[:2], 4, 2)  # warm-up
    modes = [("one at a time (generate, batch 1)", "hf", 1)]
    modes.append((f"generate, batch {args.batch_size}", "hf", args.batch_size))
    modes += [(f"ours, batch {b}", "loop", int(b)) for b in args.ours.split(",")]
    rates: dict[str, list[float]] = {m[0]: [] for m in modes}
    ratios: dict[str, list[float]] = {m[0]: [] for m in modes}
    same: dict[str, int] = {}
    tokens = 0
    print(f"prompts: {len(ids)}  max_new_tokens: {MAX_NEW}  greedy fp32  threads: {torch.get_num_threads()}")
    for rnd in range(args.rounds):
        # Rotate the order each round so background load hits every mode alike.
        order = modes[rnd % len(modes) :] + modes[: rnd % len(modes)]
        results = {}
        for name, mode, bs in order:
            out, secs = run(lm, ids, mode, bs)
            results[name] = (out, secs)
        ref = results[modes[0][0]][0]
        tokens = sum(len(r) for r in ref)
        base = tokens / results[modes[0][0]][1]
        for name, _, _ in modes:
            out, secs = results[name]
            n = sum(len(r) for r in out)
            rates[name].append(n / secs)
            ratios[name].append((n / secs) / base)
            same[name] = min(same.get(name, len(ids)), sum(a == b for a, b in zip(out, ref, strict=True)))
            print(f"  round {rnd + 1}: {name:36s} {n:5d} tokens in {secs:6.1f}s = {n / secs:6.1f} tok/s")
    print(f"medians over {args.rounds} round(s); {tokens} output tokens per pass")
    for name, _, _ in modes:
        print(
            f"{name:36s} {statistics.median(rates[name]):6.1f} tok/s  "
            f"{statistics.median(ratios[name]):5.2f}x one-at-a-time  identical {same[name]}/{len(ids)}"
        )


if __name__ == "__main__":
    main()
