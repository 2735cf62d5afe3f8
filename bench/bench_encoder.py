"""Encoder throughput of all-MiniLM-L6-v2 on real Wikipedia text, as a fraction of this machine's
matmul-bound limit measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/bench_encoder.py [--passages 128] [--batch-sizes 8,32,128]

Text: paragraphs of the 106 Wikipedia articles shipped in gensim==4.4.0 (fi_resources.sources), merged up
to ~120 words, every k-th kept so all articles are represented; truncated at the model's 256 tokens.

Limit: the encoder's FLOPs are almost all in 4 GEMMs per layer (QKV, attention output, FFN up, FFN down),
2*(4h^2 + 2hi) FLOP per token per layer (h=384, i=1536, 6 layers: 21.2 MFLOP/token), plus attention
scores/values 4*L*h per token per layer for a padded length L (counted but not in the limit). The limit is
torch fp32 GEMM FLOP/s on exactly those shapes (rows = batch x padded length) divided by FLOP/token.
Achieved = real (non-padding) tokens/s; 'padded' counts the padding the model also computes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from fi_resources.encoder import minilm_dir  # noqa: E402
from fi_resources.sources import wikipedia_articles  # noqa: E402


def passages(count: int, words: int = 120) -> list[str]:
    out: list[str] = []
    for _, text in wikipedia_articles():
        buf: list[str] = []
        for para in (p.strip() for p in text.split("\n")):
            if len(para.split()) < 8:  # headings and fragments
                continue
            buf.extend(para.split())
            if len(buf) >= words:
                out.append(" ".join(buf))
                buf = []
    step = max(1, len(out) // count)
    return out[::step][:count]


def tokenize(model: SentenceTransformer, texts: list[str]) -> dict:
    # sentence-transformers 6 renamed tokenize() to preprocess() (the old name warns).
    return (model.preprocess if hasattr(model, "preprocess") else model.tokenize)(texts)


def linear_flop_per_token(cfg) -> float:
    h, i = cfg.hidden_size, cfg.intermediate_size
    return 2.0 * (4 * h * h + 2 * h * i) * cfg.num_hidden_layers


def gemm_flops(cfg, rows: int, repeat: int = 5) -> float:
    """fp32 FLOP/s of one layer's four linear GEMMs at `rows` tokens (best of `repeat`)."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    shapes = [(h, 3 * h), (h, h), (h, i), (i, h)]
    xs = {k: torch.randn(rows, k) for k, _ in shapes}
    ws = [torch.randn(k, n) for k, n in shapes]
    flop = sum(2.0 * rows * k * n for k, n in shapes)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeat):
            t = time.perf_counter()
            for (k, _), w in zip(shapes, ws, strict=True):
                xs[k] @ w
            best = min(best, time.perf_counter() - t)
    return flop / best


def run_loop(model: SentenceTransformer, texts: list[str], batch: int, sort: bool) -> dict:
    """Tokenize + forward + mean pooling batch by batch (sorted by length or in corpus order)."""
    order = np.argsort([-len(t) for t in texts]) if sort else np.arange(len(texts))
    real = padded = attn_flop = 0
    cfg = model[0].auto_model.config
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(texts), batch):
            feats = tokenize(model, [texts[j] for j in order[lo : lo + batch]])
            out = model(feats)["sentence_embedding"]
            mask = feats["attention_mask"]
            real += int(mask.sum())
            padded += mask.numel()
            attn_flop += 4.0 * mask.shape[1] * cfg.hidden_size * cfg.num_hidden_layers * mask.numel()
            assert out.shape[0] == mask.shape[0]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "real_tokens": real, "padded_tokens": padded, "attn_flop": attn_flop}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=128)
    ap.add_argument("--batch-sizes", default="8,32,128")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    texts = passages(args.passages)
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    cfg = model[0].auto_model.config
    fpt = linear_flop_per_token(cfg)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; all-MiniLM-L6-v2: {cfg.num_hidden_layers}"
        f" layers, h={cfg.hidden_size}, i={cfg.intermediate_size}, max_seq_length {model.max_seq_length}"
    )
    print(
        f"{len(texts)} Wikipedia passages, mean {np.mean([len(t) for t in texts]):.0f} chars;"
        f" linear FLOP/token {fpt / 1e6:.2f} M"
    )
    model.encode(texts[:16], batch_size=16)  # warm-up (allocations, MKL init)

    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        for sort in (False, True):
            r = run_loop(model, texts, batch, sort)
            mean_len = r["padded_tokens"] / len(texts)
            limit = gemm_flops(cfg, rows=batch * max(1, round(mean_len))) / fpt  # same run, same shapes
            tps = r["real_tokens"] / r["seconds"]
            rows.append(
                {
                    "mode": f"loop, {'length-sorted' if sort else 'corpus order'}",
                    "batch": batch,
                    "tokens_per_s": tps,
                    "padded_tokens_per_s": r["padded_tokens"] / r["seconds"],
                    "padding_share": 1 - r["real_tokens"] / r["padded_tokens"],
                    "limit_tokens_per_s": limit,
                    "fraction_of_limit": tps / limit,
                    "attention_flop_share": r["attn_flop"] / (r["attn_flop"] + fpt * r["padded_tokens"]),
                }
            )
    # SentenceTransformer.encode as the pipeline calls it (it sorts by length internally)
    start = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    seconds = time.perf_counter() - start
    real = sum(
        int(m.sum())
        for m in (tokenize(model, texts[i : i + 64])["attention_mask"] for i in range(0, len(texts), 64))
    )
    limit = gemm_flops(cfg, rows=32 * 128) / fpt
    rows.append(
        {
            "mode": "SentenceTransformer.encode",
            "batch": 32,
            "tokens_per_s": real / seconds,
            "padded_tokens_per_s": float("nan"),
            "padding_share": float("nan"),
            "limit_tokens_per_s": limit,
            "fraction_of_limit": real / seconds / limit,
            "attention_flop_share": float("nan"),
        }
    )

    print(
        f"\n{'mode':<28} {'batch':>5} {'tokens/s':>9} {'padded/s':>9} {'pad %':>6} {'limit tok/s':>11}"
        f" {'achieved':>9} {'attn FLOP %':>11}"
    )
    for r in rows:
        print(
            f"{r['mode']:<28} {r['batch']:>5} {r['tokens_per_s']:>9.0f} {r['padded_tokens_per_s']:>9.0f}"
            f" {100 * r['padding_share']:>6.1f} {r['limit_tokens_per_s']:>11.0f} {100 * r['fraction_of_limit']:>8.1f}%"
            f" {100 * r['attention_flop_share']:>11.1f}"
        )
    print("limit = measured fp32 GEMM FLOP/s at (batch x mean padded length) rows / linear FLOP per token")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
