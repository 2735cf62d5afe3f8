"""Tune the embedded judge on the DEV half of the judge check set; report both halves and real pairs.

Usage (from the repo root, a materialized warehouse at FI_HOME, default .fi of the repository):
    python bench/tune_judge.py [--pairs-per-source 16] [--seed 0]

Signals (LM log-probabilities, MiniLM cosines) are computed once and cached as JSON under
FI_HOME/cache/bench (plain data: a cache file is read, never executed); the fit only ever sees dev twins. Prints fitted weights (copy them into fi_resources/logic/rubric.py by hand), the
win rate of correct over corrupted twins per split and corruption, and the pass rate on real pairs.
"""

import argparse
import glob
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fi_resources.encoder import Encoder, minilm_dir
from fi_resources.judge import LikelihoodJudge
from fi_resources.lm import CausalLM
from fi_resources.logic import rubric
from fi_resources.logic.judge_check import build_check_set, fit_pairwise_weights, win_stats
from fi_resources.sources import chatterbot_qa_pairs
from fi_resources.stages.judging import check_material
from fi_resources.warehouse import default_home

FEATURES = ["total_gain", "relevance", "fluency"]


def load_signals(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Cached signals by (instruction, answer); {} when there is no cache yet. JSON only: unlike a pickle, a
    cache file someone else wrote cannot run code here."""
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf8"))
        return {(r["instruction"], r["answer"]): {k: float(v) for k, v in r["signals"].items()} for r in rows}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SystemExit(f"{path}: not a signals cache written by this script ({exc!r}); delete it") from exc


def save_signals(path: Path, signals: dict[tuple[str, str], dict[str, float]]) -> None:
    rows = [
        {"instruction": i, "answer": a, "signals": {k: float(v) for k, v in s.items()}}
        for (i, a), s in signals.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows), encoding="utf8")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a cache


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=str(default_home()))
    ap.add_argument("--pairs-per-source", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    home = Path(args.home)
    silver = pd.read_parquet(home / "tables/silver_instantiations/__all__.parquet")
    docs = pd.concat(pd.read_parquet(f) for f in sorted(glob.glob(str(home / "tables/documents/*.parquet"))))
    real = pd.concat(
        pd.read_parquet(f) for f in sorted(glob.glob(str(home / "tables/judged_pairs/*.parquet")))
    )
    base, off = check_material(silver, docs, chatterbot_qa_pairs(), args.pairs_per_source, args.seed)
    twins = pd.DataFrame([t.__dict__ for t in build_check_set(base, off, seed=args.seed)])
    print(f"base pairs {len(base)}, twins {len(twins)}, by split {twins.split.value_counts().to_dict()}")

    # Under the data home, not the shared temp folder, where another user could plant a file.
    cache = home / "cache" / "bench" / f"judge_signals_{args.pairs_per_source}_{args.seed}.json"
    sig = load_signals(cache)
    items = list(dict.fromkeys(
        list(zip(twins.instruction, twins.answer, strict=True))
        + list(zip(twins.corrupted_instruction, twins.corrupted_answer, strict=True))
        + list(zip(real.instruction, real.answer, strict=True))
    ))  # fmt: skip
    todo = [x for x in items if x not in sig]
    if todo:
        cache_dir = os.environ.get("FI_MODEL_CACHE", str(home / "cache"))
        judge = LikelihoodJudge(CausalLM(Path(cache_dir) / "smollm2-135m-instruct"), Encoder(minilm_dir()))
        t = time.perf_counter()
        rows = judge.signals(
            [i for i, _ in todo],
            [a for _, a in todo],
            progress=lambda d, n, s: print(f"  signals {d}/{n} {d / s:.2f}/s", flush=True),
        )
        print(f"signals for {len(todo)} pairs in {time.perf_counter() - t:.0f}s")
        sig.update(zip(todo, rows, strict=True))
        save_signals(cache, sig)

    def feats(i, a):
        return [sig[(i, a)][f] for f in FEATURES]

    good = np.array([feats(i, a) for i, a in zip(twins.instruction, twins.answer, strict=True)])
    bad = np.array(
        [feats(i, a) for i, a in zip(twins.corrupted_instruction, twins.corrupted_answer, strict=True)]
    )
    dev = (twins.split == "dev").to_numpy()
    scale = good[dev].std(0) + 1e-9
    w = fit_pairwise_weights(good[dev] / scale, bad[dev] / scale) / scale
    print("fitted raw-feature weights:", dict(zip(FEATURES, np.round(w, 3).tolist(), strict=True)))

    def evaluate(weights: dict, bias: float, label: str) -> None:
        rubric.WEIGHTS.update(
            total_gain=weights["total_gain"], relevance=weights["relevance"], fluency=weights["fluency"]
        )
        rubric.BIAS = bias

        def judge(i, a):
            s = sig[(i, a)]
            return rubric.judge_pair(s["total_gain"], s["relevance"], s["fluency"], a)

        jg = pd.Series([judge(i, a) for i, a in zip(twins.instruction, twins.answer, strict=True)])
        jb = pd.Series(
            [judge(i, a) for i, a in zip(twins.corrupted_instruction, twins.corrupted_answer, strict=True)]
        )
        out = {}
        for split in ("dev", "test"):
            m = (twins.split == split).to_numpy()
            g, b = jg[m], jb[m]
            ws = win_stats([j.value for j in g], [j.value for j in b])
            wi = win_stats([j.score for j in g], [j.score for j in b])
            per = {}
            for c in sorted(set(twins.corruption)):
                mc = (twins.corruption[m] == c).to_numpy()
                per[c] = round(win_stats([j.value for j in g[mc]], [j.value for j in b[mc]]).win_rate, 2)
            out[split] = {
                "win": round(ws.win_rate, 3),
                "win_1to5": round(wi.win_rate, 3),
                "tie_1to5": round(wi.tie_rate, 3),
                "pass_correct": round(float(np.mean([j.score >= 4 for j in g])), 3),
                "pass_corrupted": round(float(np.mean([j.score >= 4 for j in b])), 3),
                "per_type": per,
            }
        rj = [judge(i, a) for i, a in zip(real.instruction, real.answer, strict=True)]
        dist = {
            int(k): int(v) for k, v in pd.Series([j.score for j in rj]).value_counts().sort_index().items()
        }
        out["real_pairs"] = {
            "n": len(rj),
            "pass": round(float(np.mean([j.score >= 4 for j in rj])), 3),
            "dist": dist,
        }
        print(label, json.dumps(out, indent=1))

    fitted = dict(zip(FEATURES, w.tolist(), strict=True))
    # Bias: maximise dev balanced accuracy of keep (score ≥ 4 ⇔ 1 + 4σ(q) ≥ 3.5 ⇔ q ≥ ln 5/3) on correct vs
    # corrupted twins.
    cut = np.log(5 / 3)
    qg, qb = good[dev] @ w, bad[dev] @ w
    best = max((((qg + b >= cut).mean() + (qb + b < cut).mean()) / 2, b) for b in np.linspace(-10, 10, 2001))
    print(f"dev balanced keep accuracy {best[0]:.3f} at bias {best[1]:.3f}")
    # Flag penalty (rubric.FLAG_PENALTY): the dev win rate picks it (first best of a small grid).
    rubric.WEIGHTS.update(fitted)
    rubric.BIAS = float(best[1])
    dev_twins = twins[twins.split == "dev"]

    def dev_win(penalty: float) -> float:
        rubric.FLAG_PENALTY = penalty

        def value(i, a):
            s = sig[(i, a)]
            return rubric.judge_pair(s["total_gain"], s["relevance"], s["fluency"], a).value

        good_v = [value(i, a) for i, a in zip(dev_twins.instruction, dev_twins.answer, strict=True)]
        bad_v = [
            value(i, a)
            for i, a in zip(dev_twins.corrupted_instruction, dev_twins.corrupted_answer, strict=True)
        ]
        return win_stats(good_v, bad_v).win_rate

    grid = {p: dev_win(p) for p in (0.0, 0.5, 1.0, 2.0, 4.0)}
    penalty = max(grid, key=lambda p: (grid[p], -p))
    print("dev win rate by flag penalty:", {k: round(v, 3) for k, v in grid.items()}, "→", penalty)
    rubric.FLAG_PENALTY = penalty
    evaluate(fitted, float(best[1]), "FITTED (dev-tuned)")
    print(
        f"copy into rubric.py: WEIGHTS = {json.dumps({k: round(v, 3) for k, v in fitted.items()})}, "
        f"BIAS = {best[1]:.2f}, FLAG_PENALTY = {penalty}"
    )


if __name__ == "__main__":
    main()
