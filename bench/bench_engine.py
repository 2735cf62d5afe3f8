"""Student engines on the fixed workload: transformers `generate` x16, our fp32 decode loop and CTranslate2
(int8 / int8_float32 / float32), same model, same run, interleaved rounds, medians.

Workload: ../shared/bench/generation_prompts.jsonl (first `--prompts` of its 64), SmolLM2-135M-Instruct
dequantised to fp32 and converted once to CTranslate2 into the model cache, chat template applied, greedy,
max_new_tokens=48. Prints output tokens/s of each mode, its ratio to our loop measured in the same round,
and how many outputs are token-for-token identical to our fp32 loop's greedy outputs.

    .venv/bin/python bench/bench_engine.py [--prompts 64] [--rounds 2] [--ours 64] [--ct2 int8:64,int8:16]
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_generation import MAX_NEW, WORKLOAD, strip  # noqa: E402  (the script folder is on sys.path)

from fi_resources.lm import CausalLM, materialize_smollm2  # noqa: E402
from fi_resources.lm.ct2 import CT2LM  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default=str(WORKLOAD))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--hf-batch", type=int, default=16, help="batch size of transformers generate (0 = skip)"
    )
    parser.add_argument(
        "--ours", type=int, default=64, help="batch size of our fp32 decode loop (the baseline)"
    )
    parser.add_argument(
        "--ct2",
        default="int8:64,int8_float32:64",
        help="CTranslate2 compute_type:batch_size, comma-separated",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch and CTranslate2 threads (0 = torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.workload).read_text(encoding="utf8").splitlines()][
        : args.prompts
    ]
    cache = default_home() / "cache"
    model = materialize_smollm2(cache / "smollm2-135m-instruct")
    lm = CausalLM(model)
    ids = [lm.tokenizer(lm.chat_prompt(r["prompt"]))["input_ids"] for r in rows]
    engines: dict[str, CT2LM] = {}
    for spec in args.ct2.split(","):
        ct = spec.split(":")[0]
        if ct not in engines:
            start = time.perf_counter()
            engines[ct] = CT2LM(model, cache, ct)
            how = "converted" if engines[ct].converted_now else "cached"
            print(
                f"ctranslate2 {ct}: {how} in {time.perf_counter() - start:.1f}s ({engines[ct].converted.name})"
            )
    lm.greedy_token_ids(ids[:2], 4, 2)  # warm-up
    for e in engines.values():
        e.token_ids(ids[:2], 4, 2)

    def run(mode: str, bs: int, ct: str = "") -> tuple[list[list[int]], float]:
        start = time.perf_counter()
        if mode == "hf":
            out = lm._hf_token_ids(ids, MAX_NEW, bs, None, start)
        elif mode == "loop":
            out = lm.greedy_token_ids(ids, MAX_NEW, bs)
        else:
            out = engines[ct].token_ids(ids, MAX_NEW, bs)
        return [strip(lm, r) for r in out], time.perf_counter() - start

    baseline = f"ours fp32 loop, batch {args.ours}"
    modes = [(baseline, "loop", args.ours, "")]
    if args.hf_batch:
        modes.append((f"transformers generate, batch {args.hf_batch}", "hf", args.hf_batch, ""))
    for spec in args.ct2.split(","):
        ct, bs = spec.split(":")
        modes.append((f"ctranslate2 {ct}, batch {bs}", "ct2", int(bs), ct))
    rates: dict[str, list[float]] = {m[0]: [] for m in modes}
    ratios: dict[str, list[float]] = {m[0]: [] for m in modes}
    same: dict[str, int] = {}
    threads = torch.get_num_threads()
    print(
        f"prompts: {len(ids)}  max_new_tokens: {MAX_NEW}  greedy  threads: {threads} (torch and ctranslate2)"
    )
    for rnd in range(args.rounds):
        # Rotate the order each round so background load hits every mode alike.
        order = modes[rnd % len(modes) :] + modes[: rnd % len(modes)]
        results = {name: run(mode, bs, ct) for name, mode, bs, ct in order}
        ref, ref_secs = results[baseline]
        base = sum(len(r) for r in ref) / ref_secs
        for name, *_ in modes:
            out, secs = results[name]
            n = sum(len(r) for r in out)
            rates[name].append(n / secs)
            ratios[name].append((n / secs) / base)
            same[name] = min(same.get(name, len(ids)), sum(a == b for a, b in zip(out, ref, strict=True)))
            print(f"  round {rnd + 1}: {name:34s} {n:5d} tokens in {secs:6.1f}s = {n / secs:6.1f} tok/s")
    print(f"medians over {args.rounds} round(s)")
    for name, *_ in modes:
        print(
            f"{name:34s} {statistics.median(rates[name]):6.1f} tok/s  "
            f"{statistics.median(ratios[name]):5.2f}x our fp32 loop  identical to it {same[name]}/{len(ids)}"
        )


if __name__ == "__main__":
    main()
