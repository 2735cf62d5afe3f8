"""Stage 5 (paper §4): kept pairs → a token-for-token training corpus → its export → a model pre-trained
from scratch on it and one on the raw documents → held-out losses of both."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from fi_resources.export import export_corpus
from fi_resources.logic.budget import BudgetCandidate, BudgetDocument, pair_tokens, select_token_for_token
from fi_resources.logic.prompts import render_pair
from fi_resources.pretrain import heldout_loss, pretrain, tokenize_stream
from fi_resources.settings import PretrainSettings, StageSettings
from fi_resources.stages import Log, Sample, StageResult, no_log

TokenCount = Callable[[str], int]

CORPUS_COLUMNS = [
    "pair_id", "position", "text", "instruction", "answer", "tokens", "doc_id", "source_doc_id", "doc_tokens",
    "shard", "template_id", "query_id", "excerpt_spans", "grounding_ratio", "model", "prompt_version", "judge",
    "judge_score", "judge_value",
]  # fmt: skip


def document_token_counts(documents: pd.DataFrame, count_tokens: TokenCount) -> dict[str, int]:
    """A document (a passage) costs its text plus one EOS: the same count the raw-document baseline trains on."""
    return {d: count_tokens(t) + 1 for d, t in zip(documents["doc_id"], documents["text"], strict=True)}


def training_corpus(
    judged_pairs: pd.DataFrame, documents: pd.DataFrame, count_tokens: TokenCount, settings: StageSettings
) -> StageResult[pd.DataFrame]:
    """Kept pairs under the paper's budget: a document's pairs never exceed its own token count (with rollover)."""
    kept = judged_pairs[judged_pairs["kept"].astype(bool)] if len(judged_pairs) else judged_pairs
    kept = kept.assign(
        text=[render_pair(i, a) for i, a in zip(kept["instruction"], kept["answer"], strict=True)]
    )
    kept["tokens"] = [pair_tokens(count_tokens, t) for t in kept["text"]]
    doc_tokens = document_token_counts(documents, count_tokens)
    by_doc = {d: g for d, g in kept.groupby("doc_id")}
    budget_docs = [
        BudgetDocument(
            d,
            doc_tokens[d],
            [
                BudgetCandidate(p, int(n))
                for p, n in zip(by_doc[d]["pair_id"], by_doc[d]["tokens"], strict=True)
            ]
            if d in by_doc
            else [],
        )
        for d in documents.sort_values(["shard", "doc_id"])["doc_id"]
    ]
    result = select_token_for_token(budget_docs, seed=settings.seed)
    order = {p: i for i, p in enumerate(result.selected)}
    corpus = kept[kept["pair_id"].isin(order)].copy()
    corpus["position"] = corpus["pair_id"].map(order)
    corpus["doc_tokens"] = corpus["doc_id"].map(doc_tokens)
    for column in ("judge", "judge_value"):
        if column not in corpus:
            corpus[column] = None  # judged_pairs written before the judge recorded these
    corpus = corpus.sort_values("position")[CORPUS_COLUMNS].reset_index(drop=True)
    return StageResult(
        corpus,
        {
            "rows": len(corpus),
            "candidate_pairs": len(kept),
            "documents": len(budget_docs),
            "document_tokens": result.total_doc_tokens,
            "corpus_tokens": result.total_selected_tokens,
            "budget_used": round(result.total_selected_tokens / max(1, result.total_doc_tokens), 3),
            "unused_budget_tokens": result.final_rollover,
            "pairs_per_document": round(len(corpus) / max(1, len(budget_docs)), 2),
            "sample": Sample(corpus, ["text"], n=3, width=300),
        },
    )


def export_training_corpus(
    corpus: pd.DataFrame,
    documents: pd.DataFrame,
    count_tokens: TokenCount,
    out: Path,
    keep_score: int,
    models: Mapping[str, str],
    input_versions: Mapping[str, str],
) -> StageResult[dict]:
    """The corpus as Parquet, JSONL and a Hugging Face `datasets` folder in `out`, with a dataset card that
    records its figures, the models and the data versions of its inputs. Raises ValueError when empty."""
    if corpus.empty:
        raise ValueError("the training corpus is empty: nothing to export")
    judges = sorted({str(j) for j in corpus["judge"].dropna()}) or ["unknown"]
    facts: dict[str, object] = {
        "rows": len(corpus),
        "documents": len(documents),
        "source_documents": int(documents["source_doc_id"].nunique()),
        "documents_with_pairs": int(corpus["doc_id"].nunique()),
        "document_tokens": sum(document_token_counts(documents, count_tokens).values()),
        "corpus_tokens": int(corpus["tokens"].sum()),
        "judge": ", ".join(judges),
        "keep_score": keep_score,
        "models": dict(models),
        "data_version_inputs": dict(input_versions),
    }
    facts["unused_budget_tokens"] = facts["document_tokens"] - facts["corpus_tokens"]
    files = export_corpus(corpus, out, facts)
    return StageResult({**{k: v for k, v in facts.items() if not isinstance(v, dict)}, **files})


def pretrain_checkpoint(
    tokenizer,
    texts: Sequence[str],
    out: Path,
    settings: PretrainSettings,
    exact_tokens: int | None = None,
    log: Log = no_log,
) -> StageResult[dict]:
    """A tiny Llama-style model trained from scratch on `texts` (cut to `exact_tokens` when given) into `out`."""
    ids = tokenize_stream(tokenizer, texts)
    if exact_tokens is not None:
        ids = ids[:exact_tokens]
    stats = pretrain(
        tokenizer,
        ids,
        out,
        hidden=settings.pretrain_hidden,
        layers=settings.pretrain_layers,
        epochs=settings.pretrain_epochs,
        seed=settings.seed,
        progress=log,
    )
    return StageResult({"corpus_tokens": len(ids), **stats})


def evaluate_checkpoints(
    checkpoints: Mapping[str, tuple[str, str]], tokenizer, eval_sets: Mapping[str, Sequence[str]]
) -> StageResult[pd.DataFrame]:
    """Held-out loss of each checkpoint ({name: (path, data version)}) on each eval set of texts."""
    from transformers import AutoModelForCausalLM

    sets = {name: tokenize_stream(tokenizer, texts) for name, texts in eval_sets.items()}
    rows = []
    for name, (path, version) in checkpoints.items():
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        for set_name, ids in sets.items():
            rows.append(
                {
                    "model": name,
                    "eval_set": set_name,
                    "loss": heldout_loss(model, ids),
                    "checkpoint_version": version,
                }
            )
    df = pd.DataFrame(rows)
    table = df.pivot(index="eval_set", columns="model", values="loss").round(4).reset_index()
    return StageResult(df, {"held_out_loss": table})
