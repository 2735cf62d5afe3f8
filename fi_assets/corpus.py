"""Stage 5: token-for-token training corpus, a model pre-trained on it, a raw-document baseline, and eval."""

from collections.abc import Callable

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, md_sample, text_logger
from fi_resources.export import export_corpus
from fi_resources.logic.budget import (
    BudgetCandidate,
    BudgetDocument,
    pair_tokens,
    select_token_for_token,
)
from fi_resources.logic.prompts import render_pair
from fi_resources.pretrain import heldout_loss, pretrain, tokenize_stream
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.sources import chatterbot_qa_pairs, wikipedia_articles
from fi_resources.warehouse import Artifact

GROUP = "pretraining"

corpus_refresh = dg.AutomationCondition.on_cron("0 3 * * *")  # nightly, once every shard's inputs updated


def token_counter(models: ModelsResource) -> Callable[[str], int]:
    tok = models.tokenizer()
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def document_token_counts(models: ModelsResource, documents: pd.DataFrame) -> dict[str, int]:
    """A document costs its text plus one EOS: the same count the raw-document baseline trains on."""
    count = token_counter(models)
    return {d: count(t) + 1 for d, t in zip(documents["doc_id"], documents["text"], strict=True)}


CORPUS_COLUMNS = [
    "pair_id", "position", "text", "instruction", "answer", "tokens", "doc_id", "doc_tokens", "shard",
    "template_id", "query_id", "excerpt_spans", "grounding_ratio", "model", "prompt_version", "judge",
    "judge_score", "judge_value",
]  # fmt: skip


@dg.asset(
    group_name=GROUP, code_version="2", kinds={"duckdb", "parquet"}, automation_condition=corpus_refresh
)
def training_corpus(
    judged_pairs: pd.DataFrame, documents: pd.DataFrame, models: ModelsResource, settings: PipelineSettings
) -> dg.Output[pd.DataFrame]:
    """Kept pairs under the paper's budget: a document's pairs never exceed its own token count (with rollover)."""
    count = token_counter(models)
    kept = judged_pairs[judged_pairs["kept"].astype(bool)] if len(judged_pairs) else judged_pairs
    kept = kept.assign(
        text=[render_pair(i, a) for i, a in zip(kept["instruction"], kept["answer"], strict=True)]
    )
    kept["tokens"] = [pair_tokens(count, t) for t in kept["text"]]
    doc_tokens = document_token_counts(models, documents)
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
    return dg.Output(
        corpus,
        metadata={
            "rows": len(corpus),
            "candidate_pairs": len(kept),
            "documents": len(budget_docs),
            "document_tokens": result.total_doc_tokens,
            "corpus_tokens": result.total_selected_tokens,
            "budget_used": round(result.total_selected_tokens / max(1, result.total_doc_tokens), 3),
            "unused_budget_tokens": result.final_rollover,
            "pairs_per_document": round(len(corpus) / max(1, len(budget_docs)), 2),
            "sample": md_sample(corpus, ["text"], n=3, width=300),
        },
    )


@dg.asset(group_name=GROUP, code_version="1", kinds={"parquet", "huggingface"})
def corpus_export(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The training corpus as Parquet, JSONL and a Hugging Face `datasets` folder, with a dataset card."""
    if training_corpus.empty:
        raise dg.Failure("the training corpus is empty: nothing to export")
    wh = warehouse.get()
    inputs = {}
    for asset in ("training_corpus", "judged_pairs", "instantiator", "query_templates", "documents"):
        found = wh.query(
            "SELECT data_version FROM catalog.materializations WHERE asset_key = ? "
            "ORDER BY materialized_at DESC LIMIT 1",
            [asset],
        )
        inputs[asset] = found.iloc[0, 0] if len(found) else "not recorded"
    out = wh.staging_dir("corpus_export")
    judges = sorted({str(j) for j in training_corpus["judge"].dropna()}) or ["unknown"]
    stats = {
        "rows": len(training_corpus),
        "documents": len(documents),
        "documents_with_pairs": int(training_corpus["doc_id"].nunique()),
        "document_tokens": sum(document_token_counts(models, documents).values()),
        "corpus_tokens": int(training_corpus["tokens"].sum()),
        "judge": ", ".join(judges),
        "keep_score": settings.keep_score,
        "models": models.model_names(),
        "data_version_inputs": inputs,
    }
    stats["unused_budget_tokens"] = stats["document_tokens"] - stats["corpus_tokens"]
    files = export_corpus(training_corpus, out, stats)
    context.log.info(f"exported {len(training_corpus)} pairs to {out}")
    info = {**{k: v for k, v in stats.items() if not isinstance(v, dict)}, **files}
    return dg.Output(Artifact(str(out), info=info), metadata=info)


def _checkpoint(
    context, models, settings, warehouse, asset: str, texts: list[str], exact_tokens: int | None
) -> dg.Output[Artifact]:
    tok = models.tokenizer()
    ids = tokenize_stream(tok, texts)
    if exact_tokens is not None:
        ids = ids[:exact_tokens]
    out = warehouse.get().staging_dir(asset)
    stats = pretrain(
        tok,
        ids,
        out,
        hidden=settings.pretrain_hidden,
        layers=settings.pretrain_layers,
        epochs=settings.pretrain_epochs,
        seed=settings.seed,
        progress=text_logger(context, f"{asset} pre-training"),
    )
    info = {"corpus_tokens": len(ids), **stats}
    return dg.Output(Artifact(str(out), info=info), metadata=info)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def pretrained_checkpoint(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """A tiny Llama-style model trained from scratch on the FineInstructions corpus."""
    if training_corpus.empty:
        raise dg.Failure("the training corpus is empty: nothing to pre-train on")
    return _checkpoint(
        context, models, settings, warehouse, "pretrained_checkpoint", training_corpus["text"].tolist(), None
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def baseline_checkpoint(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The same model trained on the raw documents, cut to exactly the corpus's token count."""
    tok = models.tokenizer()
    fi_tokens = len(tokenize_stream(tok, training_corpus["text"].tolist()))
    return _checkpoint(
        context, models, settings, warehouse, "baseline_checkpoint", documents["text"].tolist(), fi_tokens
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def pretraining_eval(
    pretrained_checkpoint: Artifact,
    baseline_checkpoint: Artifact,
    documents: pd.DataFrame,
    models: ModelsResource,
) -> dg.Output[pd.DataFrame]:
    """Held-out loss of both checkpoints on real Q&A in the Instruction/Answer format and on unseen articles."""
    from transformers import AutoModelForCausalLM

    tok = models.tokenizer()
    seen = set(documents["title"])
    unseen = [text[:3000] for title, text in wikipedia_articles() if title not in seen][:20]
    qa = [render_pair(q, a) for q, a in chatterbot_qa_pairs()]
    sets = {
        "real_qa_instruction_format": tokenize_stream(tok, qa),
        "unseen_wikipedia_text": tokenize_stream(tok, unseen),
    }
    rows = []
    for name, ckpt in (("fineinstructions", pretrained_checkpoint), ("raw_documents", baseline_checkpoint)):
        model = AutoModelForCausalLM.from_pretrained(ckpt.path).eval()
        for set_name, ids in sets.items():
            rows.append(
                {
                    "model": name,
                    "eval_set": set_name,
                    "loss": heldout_loss(model, ids),
                    "checkpoint_version": ckpt.data_version,
                }
            )
    df = pd.DataFrame(rows)
    table = df.pivot(index="eval_set", columns="model", values="loss").round(4)
    return dg.Output(df, metadata={"held_out_loss": dg.MetadataValue.md(table.to_markdown())})
