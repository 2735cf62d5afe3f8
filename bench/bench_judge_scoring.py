"""Judge scoring cost: `answer_logprobs` (output layer at answer positions only) vs `CausalLM.mean_logprob`
(output layer and softmax over every position), on real demo pairs with the judge's instruction context.

Usage: python bench/bench_judge_scoring.py [--pairs 32] [--rounds 3]   (needs a demo warehouse at FI_HOME)
Prints seconds per round for both, their ratio (median), pairs/s, and the largest difference in scores.
"""

import argparse
import glob
import os
import statistics
import time
from pathlib import Path

import pandas as pd

from fi_resources.judge import answer_logprobs
from fi_resources.lm import CausalLM
from fi_resources.logic.prompts import judge_contexts
from fi_resources.warehouse import default_home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=str(default_home()))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    files = sorted(glob.glob(str(Path(args.home) / "tables/judged_pairs/*.parquet")))
    pairs = pd.concat(pd.read_parquet(f) for f in files).head(args.pairs)
    cache = Path(os.environ.get("FI_MODEL_CACHE", str(Path(args.home) / "cache")))
    lm = CausalLM(cache / "smollm2-135m-instruct")
    ctx = [judge_contexts(i)[0] for i in pairs["instruction"]]
    ans = list(pairs["answer"])
    base_t, new_t, diff = [], [], 0.0
    for r in range(args.rounds):  # interleaved, so drifting machine load hits both alike
        t = time.perf_counter()
        base = lm.mean_logprob(ctx, ans, batch_size=16)
        base_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        new = answer_logprobs(lm, ctx, ans, batch_size=16)
        new_t.append(time.perf_counter() - t)
        diff = max(diff, max(abs(b - s / n) for b, (s, n) in zip(base, new, strict=True)))
        print(f"round {r}: mean_logprob {base_t[-1]:.1f}s  answer_logprobs {new_t[-1]:.1f}s")
    b, n = statistics.median(base_t), statistics.median(new_t)
    print(
        f"median: mean_logprob {b:.1f}s ({len(ans) / b:.2f} pairs/s), answer_logprobs {n:.1f}s "
        f"({len(ans) / n:.2f} pairs/s); speed-up {b / n:.2f}x; max |score difference| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
