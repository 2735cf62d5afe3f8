"""Gaussian pooling: cost and chunk-level retrieval quality, all measured in one run (all-MiniLM-L6-v2).

Text: the 106 Wikipedia articles packaged in gensim==4.4.0.

Cost (interleaved rounds, median): on real article leads cut to fit the encoder (≤ max_seq_length tokens),
1. one mean-pooled pass (the stock model: 1 embedding per document);
2. one Gaussian-pooled pass (1 global + K locals from the same forward pass);
3. K+1 separate passes' worth of work: the whole document plus its K contiguous token chunks embedded as
   separate texts (the alternative way to get K+1 position-aware vectors).
Targets (performance.md / issue 3): 2/1 ≤ 1.2 and 3/2 ≥ 4.

Quality: synthetic documents concatenate K paragraphs from K different articles (each paragraph fits
max_seq_length/K tokens, so paragraph k is about where local k is centred). Query = the sentence that follows
paragraph k in its article (held out of the document). Reported for locals vs separately embedded chunks:
- chunk accuracy: within the query's own document, is part k the best-scoring of the K vectors?
- corpus recall@1: among every (document, part) vector of the set, is the top hit (own document, part k)?
- and, for reference, document recall@1 of the global embedding alone.

    .venv/bin/python bench/bench_pooling.py [--docs 48] [--synthetic 40] [--rounds 3] [--batch-size 16]
    .venv/bin/python bench/bench_pooling.py --skip-cost --model <local_embedder artifact folder>
"""

import argparse
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from fi_resources.encoder import Encoder, minilm_dir  # noqa: E402
from fi_resources.logic.prompts import split_sentences  # noqa: E402
from fi_resources.sources import lead_document, wikipedia_articles  # noqa: E402


def chunk_texts(encoder: Encoder, text: str, k: int) -> list[str]:
    """The K contiguous token chunks of what the encoder sees of ``text`` (as character slices)."""
    offsets = [o for o in encoder.token_offsets(text) if o[1] > o[0]]
    bounds = np.linspace(0, len(offsets), k + 1).round().astype(int)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        b = max(b, a + 1)
        out.append(text[offsets[min(a, len(offsets) - 1)][0] : offsets[min(b, len(offsets)) - 1][1]])
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cost(mean: Encoder, gauss: Encoder, docs: list[str], k: int, rounds: int, batch: int) -> None:
    chunks = [c for d in docs for c in chunk_texts(mean, d, k)]
    tokens = sum(len(mean.token_offsets(d)) for d in docs)
    chunk_tokens = sum(len(mean.token_offsets(c)) for c in chunks)
    modes = {
        "mean_pooled_pass": lambda: mean.encode(docs, batch_size=batch),
        "gaussian_pass": lambda: gauss.encode_multi(docs, batch_size=batch),
        "separate_k_plus_1": lambda: (
            mean.encode(docs, batch_size=batch),
            mean.encode(chunks, batch_size=batch),
        ),
    }
    for fn in modes.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for m, fn in modes.items():
            times[m].append(timed(fn))
    med = {m: statistics.median(t) for m, t in times.items()}
    print(f"\n== cost: {len(docs)} documents, {tokens} tokens ({tokens / len(docs):.0f}/doc), K={k}, "
          f"{rounds} rounds, median ==")  # fmt: skip
    for m, t in med.items():
        extra = f" (+ {chunk_tokens} chunk tokens)" if m == "separate_k_plus_1" else ""
        print(f"{m:>20}: {t:6.2f} s  {len(docs) / t:6.1f} docs/s  {tokens / t:7.0f} doc tokens/s{extra}")
    print(
        f"gaussian / mean-pooled time      = {med['gaussian_pass'] / med['mean_pooled_pass']:.3f}  (target <= 1.2)"
    )
    print(
        f"separate K+1 / gaussian time     = {med['separate_k_plus_1'] / med['gaussian_pass']:.2f}  (target >= 4)"
    )


def paragraphs(text: str, encoder: Encoder, budget: int, per_article: int = 3) -> list[tuple[str, str]]:
    """Up to ``per_article`` (paragraph of consecutive prose sentences within ``budget`` tokens, the sentence
    that follows it) pairs from one article."""
    spans = split_sentences(text)
    out, i = [], 0
    while i < len(spans) - 1 and len(out) < per_article:
        para = []
        while i < len(spans) - 1:
            sentence = text[spans[i][0] : spans[i][1]]
            if "\n" in sentence or len(encoder.token_offsets(" ".join([*para, sentence]))) - 2 > budget:
                break
            para.append(sentence)
            i += 1
        query = text[spans[i][0] : spans[i][1]]
        if para and len(query) > 40 and "\n" not in query:
            out.append((" ".join(para), query))
        i += 4  # skip ahead: the next paragraph must not contain this query
    return out


def synthetic(articles: list[tuple[str, str]], encoder: Encoder, n: int, k: int, seed: int):
    """n documents of K paragraphs from K different articles, plus the held-out next sentence of each."""
    budget = (encoder.max_seq_length - 2) // k
    by_article = [p for p in (paragraphs(text, encoder, budget) for _, text in articles) if p]
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts = [rng.choice(by_article[a]) for a in rng.sample(range(len(by_article)), k)]
        docs.append(([p for p, _ in parts], [q for _, q in parts]))
    return docs


def quality(gauss: Encoder, mean: Encoder, articles, n: int, k: int, seed: int) -> None:
    docs = synthetic(articles, gauss, n, k, seed)
    texts = [" ".join(parts) for parts, _ in docs]
    seen = [len(gauss.token_offsets(t)) for t in texts]
    queries = [q for _, qs in docs for q in qs]
    q_emb = mean.encode(queries)
    multi = gauss.encode_multi(texts)  # (n, K+1, D)
    local = multi[:, 1:]
    sep = mean.encode([p for parts, _ in docs for p in parts]).reshape(n, k, -1)
    glob = multi[:, 0]
    truth_doc = np.repeat(np.arange(n), k)
    truth_part = np.tile(np.arange(k), n)

    def scores(vectors: np.ndarray) -> tuple[float, float]:
        own = np.einsum("qkd,qd->qk", vectors[truth_doc], q_emb)
        chunk_acc = float((own.argmax(1) == truth_part).mean())
        flat = q_emb @ vectors.reshape(n * k, -1).T
        recall = float((flat.argmax(1) == truth_doc * k + truth_part).mean())
        return chunk_acc, recall

    print(f"\n== quality: {n} synthetic documents × K={k} paragraphs from different articles, {len(queries)} "
          f"queries (tokens seen per doc: median {int(np.median(seen))}, max {max(seen)}) ==")  # fmt: skip
    g_acc, g_rec = scores(local)
    s_acc, s_rec = scores(sep)
    doc_rec = float(((q_emb @ glob.T).argmax(1) == truth_doc).mean())
    print(f"{'':>28} chunk accuracy   corpus recall@1 (of {n * k} vectors)")
    print(f"{'Gaussian locals (1 pass)':>28} {g_acc:14.3f}   {g_rec:.3f}")
    print(f"{'separately embedded chunks':>28} {s_acc:14.3f}   {s_rec:.3f}")
    print(
        f"locals / separate chunks: chunk accuracy {g_acc / s_acc:.3f}, recall@1 {g_rec / max(s_rec, 1e-9):.3f}"
    )
    print(f"global embedding alone, document recall@1 (of {n}): {doc_rec:.3f}  (chance {1 / n:.3f} / chunk "
          f"chance {1 / k:.3f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--synthetic", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-local", type=int, default=5)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="", help="a saved GaussianPooling embedder (e.g. local_embedder)")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    articles = wikipedia_articles()
    mean = Encoder(minilm_dir())
    gauss = Encoder(minilm_dir()).with_gaussian_pooling(args.num_local, args.sigma, 1.0)
    if not args.skip_cost:
        leads = [d for d in (lead_document(t, 1400) for _, t in articles) if d][: args.docs]
        cost(mean, gauss, leads, args.num_local, args.rounds, args.batch_size)
    if args.model:
        # A tuned embedder embeds the queries too (its global side), exactly as it embeds templates.
        gauss = Encoder(args.model)
        print(f"\nquality with {args.model} (K={gauss.num_local})")
        quality(gauss, gauss, articles, args.synthetic, gauss.num_local, args.seed)
    else:
        quality(gauss, mean, articles, args.synthetic, args.num_local, args.seed)


if __name__ == "__main__":
    main()
