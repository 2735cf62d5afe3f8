"""Excerpt copying: decoded tokens per final answer token, vs decoding the same answers in full.

Reads the student instantiator's real outputs from the warehouse (`instantiated_pairs`, rows with status ok:
`answer_markup` is what the model decoded, `answer` what `<excerpt>start<...>end</excerpt>` expanded to).
Counts tokens with the instantiator's own tokenizer:

  answer ratio  = tokens(answer) / tokens(answer_markup)   (the answer part alone)
  output ratio  = tokens(raw output with the answer in full) / tokens(raw output)   (whole completion,
                  instruction included, which is decoded either way)

and, for `--timed` pairs, times teacher-forced step-by-step decoding (KV cache, batch 1: the cost of
generating those tokens) of the raw output vs the same output with the answer written out, with the
instantiator artifact.

    .venv/bin/python bench/bench_excerpts.py [--timed 6]
"""

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from fi_resources.lm import CausalLM  # noqa: E402
from fi_resources.logic.excerpts import ExcerptError, expand_excerpts  # noqa: E402
from fi_resources.logic.parsing import OutputError, parse_instantiator_output  # noqa: E402
from fi_resources.logic.prompts import instantiator_prompt  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402


def load(home: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    pairs_glob = str(home / "tables" / "instantiated_pairs" / "*.parquet")
    files = sorted(glob.glob(pairs_glob))
    models = sorted((home / "artifacts" / "instantiator").glob("*/config.json"), key=os.path.getmtime)
    if not files or not models:
        sys.exit(
            f"no instantiated_pairs tables or instantiator artifact under {home}: run the demo first "
            "(or point FI_HOME at a warehouse that has them)"
        )
    pairs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    docs = pd.concat(
        [pd.read_parquet(f) for f in sorted(glob.glob(str(home / "tables" / "documents" / "*.parquet")))],
        ignore_index=True,
    )
    return pairs, docs, models[-1].parent


def quantiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return f"min {min(values):.2f}  p10 {q[0]:.2f}  median {statistics.median(values):.2f}  p90 {q[-1]:.2f}  max {max(values):.2f}"


@torch.inference_mode()
def forced_decode_seconds(lm: CausalLM, prompt: list[int], target: list[int]) -> float:
    """Feed `target` one token per step after the prompt, as generation would (prefill not timed)."""
    cache = DynamicCache(config=lm.model.config)
    lm.model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    start = time.perf_counter()
    for t in target:
        lm.model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True).logits.argmax(-1)
    return time.perf_counter() - start


def teacher_counts(home: Path, texts: pd.Series, n_tok) -> None:
    """The same ratio for the teacher's silver targets (what the student was trained to write)."""
    files = sorted(glob.glob(str(home / "tables" / "silver_instantiations" / "*.parquet")))
    if not files:
        return
    silver = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    markup = answer = 0
    ratios = []
    for r in silver[silver["target"].notna()].itertuples():
        try:
            parsed = parse_instantiator_output(r.target)
            if parsed is None:
                continue
            full = expand_excerpts(parsed[1], texts[r.doc_id]).text
        except (OutputError, ExcerptError, KeyError):
            continue
        m, a = n_tok(parsed[1]), n_tok(full)
        markup, answer = markup + m, answer + a
        ratios.append(a / m)
    if ratios:
        print(
            f"teacher silver targets ({len(ratios)}): {markup} decoded vs {answer} in full = "
            f"{answer / markup:.2f}x fewer; per pair {quantiles(ratios)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=str(default_home()))
    parser.add_argument("--timed", type=int, default=6, help="pairs whose decoding is also timed")
    args = parser.parse_args()
    pairs, docs, model_dir = load(Path(args.home))
    ok = pairs[(pairs["status"] == "ok") & pairs["answer_markup"].notna() & pairs["answer"].notna()]
    if ok.empty:
        sys.exit("no instantiated pair with status ok: nothing to measure")
    lm = CausalLM(model_dir)

    def n_tok(text: str) -> int:
        return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = []
    for r in ok.itertuples():
        full_output = r.raw_output.replace(r.answer_markup, r.answer, 1)
        rows.append(
            {
                "markup": n_tok(r.answer_markup),
                "answer": n_tok(r.answer),
                "raw": n_tok(r.raw_output),
                "full": n_tok(full_output),
                "full_output": full_output,
                "pair": r,
            }
        )
    markup, answer = sum(x["markup"] for x in rows), sum(x["answer"] for x in rows)
    raw, full = sum(x["raw"] for x in rows), sum(x["full"] for x in rows)
    per_pair = [x["answer"] / x["markup"] for x in rows]
    print(f"warehouse: {args.home}  instantiator: {model_dir}")
    print(f"pairs with status ok: {len(rows)} of {len(pairs)}")
    print(f"answer tokens decoded with copying: {markup}; the same answers in full: {answer}")
    print(f"decoded tokens per final answer token: copying {markup / answer:.3f}  in full 1.000")
    print(f"answer ratio (pooled): {answer / markup:.2f}x fewer decoded tokens")
    print(f"answer ratio per pair: {quantiles(per_pair)}")
    print(f"pairs where copying decodes fewer tokens: {sum(p > 1 for p in per_pair)}/{len(per_pair)}")
    print(f"whole completion (instruction included): {raw} vs {full} tokens = {full / raw:.2f}x fewer")

    texts = docs.set_index("doc_id")["text"]
    teacher_counts(Path(args.home), texts, n_tok)
    if args.timed > 0:
        timed = sorted(rows, key=lambda x: x["answer"] / x["markup"])
        # Spread the timed pairs over the ratio distribution rather than taking the first few.
        step = max(1, len(timed) // args.timed)
        timed = timed[::step][: args.timed]
        t_raw = t_full = 0.0
        n_raw = n_full = 0
        forced_decode_seconds(lm, [1, 2, 3], [4, 5])  # warm-up
        for x in timed:
            p = x["pair"]
            prompt = lm.tokenizer(instantiator_prompt(p.template, texts[p.doc_id]))["input_ids"]
            a = lm.tokenizer(p.raw_output, add_special_tokens=False)["input_ids"]
            b = lm.tokenizer(x["full_output"], add_special_tokens=False)["input_ids"]
            # Interleave the two so background load hits both alike.
            t_raw += forced_decode_seconds(lm, prompt, a)
            t_full += forced_decode_seconds(lm, prompt, b)
            n_raw, n_full = n_raw + len(a), n_full + len(b)
        print(
            f"timed decoding of {len(timed)} pairs (teacher-forced, batch 1): copying {n_raw} tokens in "
            f"{t_raw:.1f}s, in full {n_full} tokens in {t_full:.1f}s: time in full / time copying = {t_full / t_raw:.2f}x "
            f"({n_raw / t_raw:.1f} vs {n_full / t_full:.1f} tok/s)"
        )


if __name__ == "__main__":
    main()
