"""Copy-constrained excerpt markers vs free decoding: the demo's student instantiator on the same matches.

Reads a demo home's `document_matches` and `documents` tables and its instantiator artifact, samples
`--pairs` matches (seeded), and decodes each prompt twice in the same run, free and copy-constrained
(`logic/copy_constraint.py`). Every output is read by `read_pair` (the stage's own reader); prints the
outcome counts, decoded tokens, seconds and forced tokens of both, and their ratios.

    FI_HOME=.fi .venv/bin/python bench/bench_copy_constraint.py [--pairs 48]
"""

import argparse
import glob
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from fi_resources.lm import CausalLM  # noqa: E402
from fi_resources.logic.pairs import read_pair  # noqa: E402
from fi_resources.logic.prompts import instantiator_prompt  # noqa: E402
from fi_resources.warehouse import default_home  # noqa: E402


def table(home: Path, name: str) -> pd.DataFrame:
    files = sorted(glob.glob(str(home / "tables" / name / "*.parquet")))
    if not files:
        raise SystemExit(f"no {name} tables under {home}: run `make demo` first (or set FI_HOME)")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    home = default_home()
    models = sorted(
        glob.glob(str(home / "artifacts" / "instantiator" / "*" / "config.json")), key=os.path.getmtime
    )
    if not models:
        raise SystemExit(f"no instantiator artifact under {home}: run `make demo` first")
    lm = CausalLM(Path(models[-1]).parent)
    docs = table(home, "documents").set_index("doc_id")
    matches = table(home, "document_matches")
    matches = matches.sample(n=min(args.pairs, len(matches)), random_state=args.seed)
    texts = [docs.at[d, "text"] for d in matches["doc_id"]]
    prompts = [instantiator_prompt(t, x) for t, x in zip(matches["template"], texts, strict=True)]
    lm.generate(prompts[:2], max_new_tokens=4)  # warm-up, so neither side pays first-call costs
    results = {}
    for label, sources in (("free", None), ("copy", texts)):
        forced_before = lm.stats.forced_tokens
        start = time.perf_counter()
        outputs = lm.generate(prompts, max_new_tokens=80, copy_sources=sources)
        seconds = time.perf_counter() - start
        outcomes = Counter(read_pair(o, x, 0.8).status for o, x in zip(outputs, texts, strict=True))
        tokens = sum(len(lm.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
        results[label] = (outcomes, tokens, seconds, lm.stats.forced_tokens - forced_before)
    print(f"{len(prompts)} matches from {home}, instantiator {models[-1].split('/')[-2]}")
    for label, (outcomes, tokens, seconds, forced) in results.items():
        print(
            f"{label:5s} ok {outcomes['ok']:3d}/{len(prompts)}  tokens {tokens:5d}  {seconds:6.1f} s  "
            f"forced {forced:4d}  outcomes {dict(outcomes.most_common())}"
        )
    (f_out, f_tok, f_s, _), (c_out, c_tok, c_s, _) = results["free"], results["copy"]
    print(
        f"copy/free: valid {c_out['ok']}/{f_out['ok']}, decoded tokens {c_tok / max(1, f_tok):.2f}x, "
        f"time {c_s / f_s:.2f}x"
    )


if __name__ == "__main__":
    main()
