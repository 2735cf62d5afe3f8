"""Stage 2: compatibility pairs → fine-tuned embedder → FAISS template index → document matches."""

import random

import dagster as dg
import numpy as np
import pandas as pd

from fi_assets.common import LM_POOL, document_shards, histogram_md, md_sample
from fi_resources.index import TemplateIndex, build_index
from fi_resources.logic.sampling import DEFAULT_COMPLEXITY_DISTRIBUTION, complexity_weighted_sample
from fi_resources.resources import ModelsResource, PipelineSettings, WarehouseResource
from fi_resources.warehouse import Artifact

GROUP = "retrieval"


def template_bank(query_templates: pd.DataFrame) -> pd.DataFrame:
    """Valid templates, one row per distinct template text."""
    if query_templates.empty:
        return query_templates
    valid = query_templates[query_templates["valid"]]
    return valid.drop_duplicates("template").reset_index(drop=True)


def document_side_text(title: str, text: str) -> str:
    return f"{title}\n{text}"


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def embedder_pairs(
    documents: pd.DataFrame,
    document_descriptions: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Top-k templates per described document (untuned encoder), labelled compatible or not by the teacher."""
    bank = template_bank(query_templates)
    docs = documents.merge(document_descriptions[["doc_id", "description"]], on="doc_id")
    columns = ["doc_id", "template_id", "rank", "base_cosine", "compatible", "teacher_reason"]
    if bank.empty or docs.empty:
        return dg.Output(
            pd.DataFrame(columns=columns), metadata={"rows": 0, "note": "no templates or documents"}
        )
    encoder, teacher = models.encoder(), models.teacher_for(settings)
    d_emb = encoder.encode(docs["description"].tolist())
    t_emb = encoder.encode(bank["compatible_document_description"].tolist())
    sims = d_emb @ t_emb.T
    rows = []
    for i, doc in enumerate(docs.itertuples()):
        top = np.argsort(-sims[i])[: settings.embedder_top_k]
        for rank, j in enumerate(top):
            label = teacher.instantiate(bank.at[j, "template"], doc.title, doc.text)
            rows.append(
                {
                    "doc_id": doc.doc_id,
                    "template_id": bank.at[j, "template_id"],
                    "rank": rank,
                    "base_cosine": float(sims[i, j]),
                    "compatible": label.reason == "ok",
                    "teacher_reason": label.reason,
                }
            )
    df = pd.DataFrame(rows, columns=columns)
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "documents": int(df["doc_id"].nunique()),
            "hard_positives": int(df["compatible"].sum()),
            "hard_negatives": int((~df["compatible"]).sum()),
            "teacher_reasons": dg.MetadataValue.json(df["teacher_reason"].value_counts().to_dict()),
        },
    )


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def retrieval_embedder(
    context: dg.AssetExecutionContext,
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """The encoder fine-tuned for compatibility: document text ↔ compatible template description."""
    bank = template_bank(query_templates).set_index("template_id")
    docs = documents.set_index("doc_id")
    rng = random.Random(settings.seed)
    anchors, positives, negatives = [], [], []
    for doc_id, group in embedder_pairs.groupby("doc_id"):
        pos = group[group["compatible"]]["template_id"].tolist()
        neg = group[~group["compatible"]]["template_id"].tolist() or [rng.choice(bank.index.tolist())]
        for t in pos:
            anchors.append(document_side_text(docs.at[doc_id, "title"], docs.at[doc_id, "text"]))
            positives.append(bank.at[t, "compatible_document_description"])
            negatives.append(bank.at[rng.choice(neg), "compatible_document_description"])
    encoder = models.fresh_encoder()
    out = warehouse.get().staging_dir("retrieval_embedder")
    base = models.model_names()["encoder"]
    if len(anchors) < 2:
        # Too little teacher signal to train on: ship the base encoder and say so in the metadata.
        encoder.model.save(str(out))
        info = {"base_model": base, "trained": False, "pairs": len(anchors)}
    else:
        context.log.info(
            f"fine-tuning the embedder on {len(anchors)} (document, positive, hard negative) triplets"
        )
        stats = encoder.finetune(
            anchors, positives, negatives, out, epochs=settings.embedder_epochs, seed=settings.seed
        )
        info = {"base_model": base, "trained": True, "loss": "MultipleNegativesRankingLoss", **stats}
    return dg.Output(Artifact(str(out), info=info), metadata=info)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"faiss"})
def template_index(
    query_templates: pd.DataFrame,
    retrieval_embedder: Artifact,
    models: ModelsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """FAISS index over the bank's compatible document descriptions, embedded by the tuned embedder."""
    bank = template_bank(query_templates)
    encoder = models.encoder(retrieval_embedder.path)
    vectors = encoder.encode(bank["compatible_document_description"].tolist() if len(bank) else [])
    out = warehouse.get().staging_dir("template_index")
    info = build_index(vectors, bank["template_id"].tolist() if len(bank) else [], out)
    info["embedder_version"] = retrieval_embedder.data_version
    return dg.Output(Artifact(str(out), info=info), metadata=info)


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def document_matches(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    retrieval_embedder: Artifact,
    template_index: Artifact,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Templates for each document: cosine above the threshold, then complexity-weighted sampling."""
    bank = template_bank(query_templates).set_index("template_id")
    index = TemplateIndex(template_index.path)
    encoder = models.encoder(retrieval_embedder.path)
    emb = encoder.encode(
        [document_side_text(t, x) for t, x in zip(documents["title"], documents["text"], strict=True)]
    )
    hits = index.search(emb, k=50)
    rows, best = [], []
    for doc_i, (doc_id, found) in enumerate(zip(documents["doc_id"], hits, strict=True)):
        if found:
            best.append(found[0][1])
        candidates = [(t, s, int(bank.at[t, "n_slots"])) for t, s in found]
        chosen = complexity_weighted_sample(
            candidates,
            k=settings.matches_per_document,
            target_distribution=DEFAULT_COMPLEXITY_DISTRIBUTION,
            threshold=settings.match_threshold,
            seed=settings.seed * 1_000_003 + doc_i,
        )
        cos = dict(found)
        for t in chosen:
            rows.append(
                {
                    "match_id": f"{doc_id}:{t}",
                    "doc_id": doc_id,
                    "shard": context.partition_key,
                    "template_id": t,
                    "query_id": bank.at[t, "query_id"],
                    "template": bank.at[t, "template"],
                    "n_slots": int(bank.at[t, "n_slots"]),
                    "cosine": cos[t],
                    "embedding": "global",
                }
            )
    columns = [
        "match_id",
        "doc_id",
        "shard",
        "template_id",
        "query_id",
        "template",
        "n_slots",
        "cosine",
        "embedding",
    ]
    df = pd.DataFrame(rows, columns=columns)
    matched = df["doc_id"].nunique()
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "documents": len(documents),
            "matched_documents": int(matched),
            "mean_matches_per_document": round(len(df) / max(1, len(documents)), 2),
            "threshold": settings.match_threshold,
            "best_cosine_histogram": histogram_md(best, "best cosine per document") if best else "n/a",
            "sample": md_sample(df.merge(documents[["doc_id", "title"]]), ["title", "template", "cosine"]),
        },
    )
