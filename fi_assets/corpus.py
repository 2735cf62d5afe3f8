"""Stage 5 assets: token-for-token training corpus, its export, a model pre-trained on it, a raw-document
baseline, and their evaluation. Thin adapters over `fi_resources.stages.corpus`."""

import dagster as dg
import pandas as pd

from fi_assets.common import LM_POOL, artifact_output, table_output, text_logger
from fi_resources.logic.prompts import render_pair
from fi_resources.pretrain import tokenize_stream
from fi_resources.resources import (
    CorpusSettingsResource,
    JudgeSettingsResource,
    ModelsResource,
    PretrainSettingsResource,
    WarehouseResource,
)
from fi_resources.sources import chatterbot_qa_pairs, wikipedia_articles
from fi_resources.stages import corpus as stage
from fi_resources.warehouse import Artifact

GROUP = "pretraining"

corpus_refresh = dg.AutomationCondition.on_cron("0 3 * * *")  # nightly, once every shard's inputs updated

# Inputs whose data versions the dataset card records.
CARD_INPUTS = ("training_corpus", "judged_pairs", "instantiator", "query_templates", "documents")


@dg.asset(
    group_name=GROUP, code_version="3", kinds={"duckdb", "parquet"}, automation_condition=corpus_refresh
)
def training_corpus(
    judged_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    corpus_settings: CorpusSettingsResource,
) -> dg.Output[pd.DataFrame]:
    """Kept pairs under the paper's budget: a document's pairs never exceed its own token count (with rollover)."""
    count = models.parts().store.token_counter()
    return table_output(stage.training_corpus(judged_pairs, documents, count, corpus_settings))


@dg.asset(group_name=GROUP, code_version="2", kinds={"parquet", "huggingface"})
def corpus_export(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    judge_settings: JudgeSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The training corpus as Parquet, JSONL and a Hugging Face `datasets` folder, with a dataset card."""
    wh, parts = warehouse.get(), models.parts()
    out = wh.staging_dir("corpus_export")
    try:
        result = stage.export_training_corpus(
            training_corpus,
            documents,
            parts.store.token_counter(),
            out,
            keep_score=judge_settings.keep_score,
            models=parts.model_names(),
            input_versions={asset: wh.latest_data_version(asset) or "not recorded" for asset in CARD_INPUTS},
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    context.log.info(f"exported {len(training_corpus)} pairs to {out}")
    return artifact_output(out, result)


def _checkpoint(
    context, models, pretrain_settings, warehouse, asset, texts, exact_tokens
) -> dg.Output[Artifact]:
    out = warehouse.get().staging_dir(asset)
    result = stage.pretrain_checkpoint(
        models.parts().store.tokenizer(), texts, out, pretrain_settings, exact_tokens,
        log=text_logger(context, f"{asset} pre-training"),
    )  # fmt: skip
    return artifact_output(out, result)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def pretrained_checkpoint(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    models: ModelsResource,
    pretrain_settings: PretrainSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """A tiny Llama-style model trained from scratch on the FineInstructions corpus."""
    if training_corpus.empty:
        raise dg.Failure("the training corpus is empty: nothing to pre-train on")
    texts = training_corpus["text"].tolist()
    return _checkpoint(context, models, pretrain_settings, warehouse, "pretrained_checkpoint", texts, None)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def baseline_checkpoint(
    context: dg.AssetExecutionContext,
    training_corpus: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    pretrain_settings: PretrainSettingsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The same model trained on the raw documents, cut to exactly the corpus's token count."""
    if training_corpus.empty:
        raise dg.Failure("the training corpus is empty: no token count for the baseline to match")
    fi_tokens = len(tokenize_stream(models.parts().store.tokenizer(), training_corpus["text"].tolist()))
    texts = documents["text"].tolist()
    return _checkpoint(context, models, pretrain_settings, warehouse, "baseline_checkpoint", texts, fi_tokens)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def pretraining_eval(
    pretrained_checkpoint: Artifact,
    baseline_checkpoint: Artifact,
    documents: pd.DataFrame,
    models: ModelsResource,
) -> dg.Output[pd.DataFrame]:
    """Held-out loss of both checkpoints on real Q&A in the Instruction/Answer format and on unseen articles."""
    seen = set(documents["title"])
    eval_sets = {
        "real_qa_instruction_format": [render_pair(q, a) for q, a in chatterbot_qa_pairs()],
        "unseen_wikipedia_text": [text[:3000] for title, text in wikipedia_articles() if title not in seen][
            :20
        ],
    }
    checkpoints = {
        "fineinstructions": (pretrained_checkpoint.path, pretrained_checkpoint.data_version),
        "raw_documents": (baseline_checkpoint.path, baseline_checkpoint.data_version),
    }
    return table_output(stage.evaluate_checkpoints(checkpoints, models.parts().store.tokenizer(), eval_sets))
