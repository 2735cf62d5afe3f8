"""The judge's slot type check on the hand-labelled audit set: precision among kept pairs and recall per split,
without the check and with it at each `top_k` (how high the slot's type must rank among the model's types
for its value, logic/slot_types.py). Choose `top_k` on the tune split only; the held-out split reports it.

    .venv/bin/python bench/slot_type_report.py
"""

import os
import time
from pathlib import Path

import pandas as pd

from fi_resources.encoder import Encoder, minilm_dir
from fi_resources.judge import LikelihoodJudge
from fi_resources.lm import CausalLM
from fi_resources.logic.audit import load_labels
from fi_resources.warehouse import default_home

TOP_KS = (1, 2, 3, 4, 6)


def row(df: pd.DataFrame, kept: pd.Series, what: str, split: str) -> dict:
    part, k = df[df["split"] == split], kept[df["split"] == split]
    n_kept, good = int(k.sum()), int((k & part["sensible"]).sum())
    return {"check": what, "split": split, "kept": n_kept, "sensible_kept": good,
            "precision": round(good / n_kept, 3) if n_kept else None,
            "recall": round(good / int(part["sensible"].sum()), 3)}  # fmt: skip


def main() -> None:
    df = load_labels()
    cache = Path(os.environ.get("FI_MODEL_CACHE", str(default_home() / "cache")))
    judge = LikelihoodJudge(CausalLM(cache / "smollm2-135m-instruct"), Encoder(minilm_dir()))
    judge.slot_top_k = None
    t = time.perf_counter()
    scored = judge.score(df["instruction"].tolist(), df["answer"].tolist(), None, df["template"].tolist())
    base = pd.Series([(s["judge_score"] or 0) >= 4 for s in scored], index=df.index)
    print(f"{len(df)} labelled pairs scored in {time.perf_counter() - t:.0f} s")
    rows = [row(df, base, "no slot type check", s) for s in ("tune", "heldout")]
    for top_k in TOP_KS:
        t = time.perf_counter()
        mismatch = judge.slot_type_mismatches(df["template"].tolist(), df["instruction"].tolist(), top_k)
        kept = base & pd.Series([m is None for m in mismatch], index=df.index)
        rows += [row(df, kept, f"top_k {top_k}", s) for s in ("tune", "heldout")]
        print(f"top_k {top_k}: typed in {time.perf_counter() - t:.1f} s")
    print(pd.DataFrame(rows).sort_values(["split", "check"], ascending=[False, True]).to_string(index=False))


if __name__ == "__main__":
    main()
