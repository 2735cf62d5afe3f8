"""Stage 2 (paper §2): teacher-labelled pairs → embedder fine-tuned in two rounds (global contrastive, then
Gaussian-pooled locals on chunk-index labels) → FAISS template index → document matches (one template per
embedding: global + K locals) → retrieval evaluation on held-out documents."""

import random
import time
import zlib

import dagster as dg
import numpy as np
import pandas as pd

from fi_assets.common import LM_POOL, document_shards, histogram_md, md_sample, progress_logger
from fi_resources.encoder import Encoder
from fi_resources.index import TemplateIndex, build_index
from fi_resources.logic.calibration import calibrate_threshold, pearson, precision_at_k, split_documents
from fi_resources.logic.excerpts import ExcerptError, expand_excerpts
from fi_resources.logic.pooling import char_to_token_position, nearest_chunk
from fi_resources.logic.sampling import (
    DEFAULT_COMPLEXITY_DISTRIBUTION,
    embedding_name,
    match_per_embedding,
    top_per_embedding,
)
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


def text_offset(title: str) -> int:
    """Where the document text starts inside ``document_side_text`` (teacher spans index the bare text)."""
    return len(title) + 1


def answer_position(encoder: Encoder, title: str, text: str, start: int, end: int) -> tuple[int, int] | None:
    """(token index, tokens seen) of the middle of the answer span text[start:end] in the encoder's
    (truncated) input, or None when truncation cut it off."""
    offsets = encoder.token_offsets(document_side_text(title, text))
    token = char_to_token_position(offsets, text_offset(title) + (start + end) // 2)
    return None if token is None else (token, len(offsets))


def answer_span(markup: str | None, text: str) -> tuple[int, int]:
    """Character span (first start, last end) of the teacher's excerpt in the text, (-1, -1) if none."""
    if not markup:
        return -1, -1
    try:
        spans = expand_excerpts(markup, text).doc_spans
    except ExcerptError:
        return -1, -1
    return (spans[0][0], spans[-1][1]) if spans else (-1, -1)


def gaussian_encoder(path: str, settings: PipelineSettings) -> Encoder:
    """An uncached encoder (training mutates it) carrying the settings' GaussianPooling."""
    return Encoder(path).with_gaussian_pooling(
        settings.pooling_num_local, settings.pooling_sigma, settings.pooling_alpha
    )


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def embedder_pairs(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    document_descriptions: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Top-k templates per described document (untuned encoder), labelled compatible or not by the teacher,
    with the answer excerpt's character span (for chunk labels) and a seeded train/heldout split by document."""
    bank = template_bank(query_templates)
    docs = documents.merge(document_descriptions[["doc_id", "description"]], on="doc_id")
    columns = [
        "doc_id", "template_id", "rank", "base_cosine", "compatible", "teacher_reason", "split",
        "answer_start", "answer_end",
    ]  # fmt: skip
    if bank.empty or docs.empty:
        return dg.Output(
            pd.DataFrame(columns=columns), metadata={"rows": 0, "note": "no templates or documents"}
        )
    encoder, teacher = models.encoder(), models.teacher_for(settings)
    d_emb = encoder.encode(docs["description"].tolist())
    t_emb = encoder.encode(bank["compatible_document_description"].tolist())
    sims = d_emb @ t_emb.T
    heldout = split_documents(docs["doc_id"].tolist(), settings.heldout_fraction, settings.seed)
    report = progress_logger(context, "teacher labels")
    total, start, rows = len(docs) * min(settings.embedder_top_k, len(bank)), time.perf_counter(), []
    for i, doc in enumerate(docs.itertuples()):
        top = np.argsort(-sims[i])[: settings.embedder_top_k]
        for rank, j in enumerate(top):
            label = teacher.instantiate(bank.at[j, "template"], doc.title, doc.text)
            a_start, a_end = answer_span(label.answer_markup, doc.text) if label.reason == "ok" else (-1, -1)
            rows.append(
                {
                    "doc_id": doc.doc_id,
                    "template_id": bank.at[j, "template_id"],
                    "rank": rank,
                    "base_cosine": float(sims[i, j]),
                    "compatible": label.reason == "ok",
                    "teacher_reason": label.reason,
                    "split": "heldout" if doc.doc_id in heldout else "train",
                    "answer_start": a_start,
                    "answer_end": a_end,
                }
            )
            report(len(rows), total, time.perf_counter() - start)
    df = pd.DataFrame(rows, columns=columns)
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "documents": int(df["doc_id"].nunique()),
            "heldout_documents": len(heldout),
            "hard_positives": int(df["compatible"].sum()),
            "hard_negatives": int((~df["compatible"]).sum()),
            "labels_per_s": round(len(df) / max(1e-9, time.perf_counter() - start), 1),
            "teacher_reasons": dg.MetadataValue.json(df["teacher_reason"].value_counts().to_dict()),
        },
    )


def _triplets(
    pairs: pd.DataFrame, docs: pd.DataFrame, bank: pd.DataFrame, rng: random.Random
) -> tuple[list[str], list[str], list[str], list[int]]:
    """(document, compatible description, hard-negative description) per positive row of ``pairs`` (a hard
    negative is an incompatible top-k template of the same document, else a random template), plus the
    row's `chunk` when the frame has one."""
    anchors, positives, negatives, chunks = [], [], [], []
    for doc_id, group in pairs.groupby("doc_id", sort=True):
        neg = group[~group["compatible"]]["template_id"].tolist() or [rng.choice(bank.index.tolist())]
        for row in group[group["compatible"]].itertuples():
            anchors.append(document_side_text(docs.at[doc_id, "title"], docs.at[doc_id, "text"]))
            positives.append(bank.at[row.template_id, "compatible_document_description"])
            negatives.append(bank.at[rng.choice(neg), "compatible_document_description"])
            chunks.append(int(getattr(row, "chunk", 0)))
    return anchors, positives, negatives, chunks


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"pytorch"})
def retrieval_embedder(
    context: dg.AssetExecutionContext,
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Round 1: the encoder, carrying GaussianPooling, fine-tuned for compatibility on the global embedding
    (MultipleNegativesRanking with the teacher's hard negatives), training documents only."""
    bank = template_bank(query_templates).set_index("template_id")
    docs = documents.set_index("doc_id")
    train = embedder_pairs[embedder_pairs["split"] == "train"] if len(embedder_pairs) else embedder_pairs
    anchors, positives, negatives, _ = _triplets(train, docs, bank, random.Random(settings.seed))
    encoder = gaussian_encoder(str(models.base_encoder_path()), settings)
    out = warehouse.get().staging_dir("retrieval_embedder")
    info = {
        "base_model": models.model_names()["encoder"],
        "num_local": settings.pooling_num_local,
        "sigma": settings.pooling_sigma,
        "alpha": settings.pooling_alpha,
    }
    if len(anchors) < 2:
        # Too little teacher signal to train on: ship the base encoder and say so in the metadata.
        encoder.model.save(str(out))
        info |= {"trained": False, "pairs": len(anchors)}
    else:
        context.log.info(
            f"round 1: fine-tuning on {len(anchors)} (document, positive, hard negative) triplets"
        )
        stats = encoder.finetune(
            anchors, positives, negatives, out, epochs=settings.embedder_epochs, seed=settings.seed
        )
        info |= {"trained": True, "loss": "MultipleNegativesRankingLoss", **stats}
    return dg.Output(Artifact(str(out), info=info), metadata=info)


@dg.asset(group_name=GROUP, code_version="1", kinds={"duckdb"})
def chunk_labels(
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Round-2 training data: for each compatible (document, template) pair, the chunk k (1..K) whose Gaussian
    centre k/(K+1) is nearest the middle of the teacher's answer excerpt, measured in tokens of the encoder's
    (truncated) input. Pairs whose answer lies past the truncation are dropped and counted."""
    columns = ["doc_id", "template_id", "split", "answer_token", "tokens", "relative_position", "chunk"]
    ok = (
        embedder_pairs[embedder_pairs["compatible"] & (embedder_pairs["answer_start"] >= 0)]
        if len(embedder_pairs)
        else embedder_pairs
    )
    encoder, docs = models.encoder(), documents.set_index("doc_id")
    rows, truncated = [], 0
    for r in ok.itertuples():
        title, text = docs.at[r.doc_id, "title"], docs.at[r.doc_id, "text"]
        found = answer_position(encoder, title, text, int(r.answer_start), int(r.answer_end))
        if found is None:
            truncated += 1
            continue
        token, n = found
        rel = (token + 0.5) / n
        rows.append(
            {
                "doc_id": r.doc_id,
                "template_id": r.template_id,
                "split": r.split,
                "answer_token": token,
                "tokens": n,
                "relative_position": rel,
                "chunk": nearest_chunk(rel, settings.pooling_num_local),
            }
        )
    df = pd.DataFrame(rows, columns=columns)
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "train_rows": int((df["split"] == "train").sum()),
            "dropped_past_truncation": truncated,
            "chunk_counts": dg.MetadataValue.json(
                {str(k): int(v) for k, v in df["chunk"].value_counts().sort_index().items()}
            ),
            "relative_position_histogram": histogram_md(df["relative_position"].tolist(), "answer position")
            if len(df)
            else "n/a",
        },
    )


def heldout_pair_scores(
    encoder: Encoder, pairs: pd.DataFrame, docs: pd.DataFrame, bank: pd.DataFrame
) -> np.ndarray:
    """Per labelled pair: the best cosine over the document's K+1 embeddings (the matching rule lets any of
    them retrieve the template)."""
    doc_ids = pairs["doc_id"].unique().tolist()
    multi = encoder.encode_multi(
        [document_side_text(docs.at[d, "title"], docs.at[d, "text"]) for d in doc_ids]
    )
    row = {d: i for i, d in enumerate(doc_ids)}
    t_emb = encoder.encode([bank.at[t, "compatible_document_description"] for t in pairs["template_id"]])
    d_emb = multi[[row[d] for d in pairs["doc_id"]]]  # (P, K+1, D)
    return np.einsum("pkd,pd->pk", d_emb, t_emb).max(1)


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"pytorch"})
def local_embedder(
    context: dg.AssetExecutionContext,
    chunk_labels: pd.DataFrame,
    embedder_pairs: pd.DataFrame,
    retrieval_embedder: Artifact,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    settings: PipelineSettings,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """Round 2: the round-1 embedder trained so local embedding k of a document matches the template whose
    answer sits in chunk k (LocalChunkLoss), then its match threshold calibrated on held-out teacher labels
    (the cosine maximising F1). This is the final embedder the index and the matcher use."""
    bank = template_bank(query_templates).set_index("template_id")
    docs = documents.set_index("doc_id")
    train = chunk_labels[chunk_labels["split"] == "train"]
    # Incompatible rows of the same documents supply the hard negatives.
    labelled = (
        pd.concat(
            [train.assign(compatible=True), embedder_pairs[~embedder_pairs["compatible"]].assign(chunk=0)]
        )
        if len(embedder_pairs)
        else train.assign(compatible=True)
    )
    anchors, positives, negatives, chunks = _triplets(labelled, docs, bank, random.Random(settings.seed + 1))
    encoder = Encoder(retrieval_embedder.path)  # uncached: training mutates it
    out = warehouse.get().staging_dir("local_embedder")
    info: dict = {
        "base_model": retrieval_embedder.info.get("base_model", ""),
        "round1_version": retrieval_embedder.data_version,
        "num_local": encoder.num_local,
    }
    if len(anchors) < 2 or not encoder.num_local:
        encoder.model.save(str(out))
        info |= {"trained": False, "pairs": len(anchors)}
    else:
        context.log.info(
            f"round 2: chunk-label fine-tuning on {len(anchors)} (document, chunk k, template) rows"
        )
        stats = encoder.finetune(
            anchors, positives, negatives, out, epochs=settings.local_embedder_epochs, seed=settings.seed,
            chunk_labels=chunks,
        )  # fmt: skip
        info |= {"trained": True, "loss": "LocalChunkLoss", **stats}
    held = embedder_pairs[embedder_pairs["split"] == "heldout"] if len(embedder_pairs) else embedder_pairs
    held = held[held["template_id"].isin(bank.index)]
    if len(held) and encoder.num_local:
        scores = heldout_pair_scores(encoder, held, docs, bank)
        cal = calibrate_threshold(scores.tolist(), held["compatible"].tolist())
    else:
        cal = calibrate_threshold([], [])
    if cal.threshold is not None:
        info |= {
            "match_threshold": round(cal.threshold, 4),
            "threshold_source": "calibrated (max F1, held-out)",
        }
    else:
        info |= {
            "match_threshold": settings.fallback_match_threshold,
            "threshold_source": f"fallback: {cal.reason}",
        }
    info |= {
        "calibration_pairs": cal.n,
        "calibration_positives": cal.positives,
        "calibration_f1": cal.f1,
        "calibration_precision": cal.precision,
        "calibration_recall": cal.recall,
    }
    return dg.Output(Artifact(str(out), info=info), metadata={k: v for k, v in info.items() if v is not None})


@dg.asset(group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"faiss"})
def template_index(
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    models: ModelsResource,
    warehouse: WarehouseResource,
) -> dg.Output[Artifact]:
    """FAISS index over the bank's compatible document descriptions, embedded by the final (round-2) embedder."""
    bank = template_bank(query_templates)
    encoder = models.encoder(local_embedder.path)
    vectors = encoder.encode(bank["compatible_document_description"].tolist() if len(bank) else [])
    out = warehouse.get().staging_dir("template_index")
    info = build_index(vectors, bank["template_id"].tolist() if len(bank) else [], out)
    info["embedder_version"] = local_embedder.data_version
    return dg.Output(Artifact(str(out), info=info), metadata=info)


def match_threshold(settings: PipelineSettings, embedder: Artifact) -> tuple[float, str]:
    if settings.match_threshold is not None:
        return float(settings.match_threshold), "setting match_threshold"
    if embedder.info.get("match_threshold") is None:
        return settings.fallback_match_threshold, "fallback (embedder has no threshold)"
    return float(embedder.info["match_threshold"]), str(embedder.info.get("threshold_source", "embedder"))


@dg.asset(partitions_def=document_shards, group_name=GROUP, code_version="2", pool=LM_POOL, kinds={"duckdb"})
def document_matches(
    context: dg.AssetExecutionContext,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    template_index: Artifact,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Templates for each document (paper's rule): the global and K local embeddings each search the index;
    candidates above the cosine threshold; one complexity-weighted sample per embedding, no duplicates."""
    bank = template_bank(query_templates).set_index("template_id")
    index = TemplateIndex(template_index.path)
    encoder = models.encoder(local_embedder.path)
    threshold, source = match_threshold(settings, local_embedder)
    texts = [document_side_text(t, x) for t, x in zip(documents["title"], documents["text"], strict=True)]
    # (documents, K+1, dim); an embedder without GaussianPooling falls back to the global embedding only.
    multi = encoder.encode_multi(texts) if encoder.num_local else encoder.encode(texts)[:, None, :]
    n_doc, n_emb, dim = multi.shape
    hits = index.search(multi.reshape(n_doc * n_emb, dim), k=50)
    n_slots = {t: int(n) for t, n in bank["n_slots"].items()}
    rows, best = [], []
    for doc_i, doc_id in enumerate(documents["doc_id"]):
        doc_hits = hits[doc_i * n_emb : (doc_i + 1) * n_emb]
        if doc_hits and doc_hits[0]:
            best.append(max(found[0][1] for found in doc_hits if found))
        chosen = match_per_embedding(
            doc_hits,
            n_slots,
            target_distribution=DEFAULT_COMPLEXITY_DISTRIBUTION,
            threshold=threshold,
            # Seeded by document, not position: a document gets the same templates in any shard.
            seed=settings.seed * 1_000_003 + zlib.crc32(str(doc_id).encode()),
            max_matches=settings.matches_per_document,
        )
        for e, t, cos in chosen:
            rows.append(
                {
                    "match_id": f"{doc_id}:{t}",
                    "doc_id": doc_id,
                    "shard": context.partition_key,
                    "template_id": t,
                    "query_id": bank.at[t, "query_id"],
                    "template": bank.at[t, "template"],
                    "n_slots": int(bank.at[t, "n_slots"]),
                    "cosine": cos,
                    "embedding": embedding_name(e),
                }
            )
    columns = [
        "match_id", "doc_id", "shard", "template_id", "query_id", "template", "n_slots", "cosine", "embedding",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=columns)
    matched = df["doc_id"].nunique()
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "documents": len(documents),
            "matched_documents": int(matched),
            "mean_matches_per_document": round(len(df) / max(1, len(documents)), 2),
            "threshold": threshold,
            "threshold_source": source,
            "embeddings_per_document": n_emb,
            "matches_by_embedding": dg.MetadataValue.json(df["embedding"].value_counts().to_dict()),
            "slot_count_mix": dg.MetadataValue.json(
                {str(k): int(v) for k, v in df["n_slots"].value_counts().sort_index().items()}
            ),
            "best_cosine_histogram": histogram_md(best, "best cosine per document") if best else "n/a",
            "sample": md_sample(
                df.merge(documents[["doc_id", "title"]]), ["title", "embedding", "template", "cosine"]
            ),
        },
    )


EVAL_K = 6


@dg.asset(group_name=GROUP, code_version="1", pool=LM_POOL, kinds={"duckdb"})
def retrieval_eval(
    context: dg.AssetExecutionContext,
    embedder_pairs: pd.DataFrame,
    documents: pd.DataFrame,
    query_templates: pd.DataFrame,
    local_embedder: Artifact,
    models: ModelsResource,
    settings: PipelineSettings,
) -> dg.Output[pd.DataFrame]:
    """Held-out documents: precision@6 of teacher-compatible templates for the tuned embedder (global + K
    locals, one per embedding), the untuned encoder with the same Gaussian pooling, and plain mean pooling
    (global top 6); and the Pearson correlation between the retrieving chunk k and the answer's position."""
    columns = [
        "system", "doc_id", "rank", "template_id", "embedding", "cosine", "compatible", "teacher_reason",
        "answer_relative_position",
    ]  # fmt: skip
    bank = template_bank(query_templates)
    held = (
        sorted(embedder_pairs.loc[embedder_pairs["split"] == "heldout", "doc_id"].unique())
        if len(embedder_pairs)
        else []
    )
    held = held[: settings.eval_max_documents]
    reason = "no valid templates" if bank.empty else "no held-out labelled documents" if not held else ""
    if reason:
        return dg.Output(
            pd.DataFrame(columns=columns), metadata={"rows": 0, "precision_at_6": f"n/a ({reason})"}
        )
    bank = bank.set_index("template_id")
    docs = documents.set_index("doc_id")
    texts = [document_side_text(docs.at[d, "title"], docs.at[d, "text"]) for d in held]
    descriptions = bank["compatible_document_description"].tolist()
    ids = bank.index.tolist()
    k = min(EVAL_K, len(ids))

    def ranked(doc_emb: np.ndarray, bank_emb: np.ndarray) -> list[list[tuple[str, float]]]:
        sims = doc_emb @ bank_emb.T
        return [[(ids[j], float(s[j])) for j in np.argsort(-s)[: k + 10]] for s in sims]

    tuned = models.encoder(local_embedder.path)
    base = gaussian_encoder(str(models.base_encoder_path()), settings)
    tuned_multi, tuned_bank = tuned.encode_multi(texts), tuned.encode(descriptions)
    base_multi, base_bank = base.encode_multi(texts), base.encode(descriptions)
    n_emb = tuned_multi.shape[1]
    picks: dict[str, list[list[tuple[int, str, float]]]] = {"tuned": [], "untuned": [], "mean_pooling": []}
    for i in range(len(held)):
        picks["tuned"].append(top_per_embedding(ranked(tuned_multi[i], tuned_bank), k))
        picks["untuned"].append(top_per_embedding(ranked(base_multi[i], base_bank), k))
        picks["mean_pooling"].append(top_per_embedding(ranked(base_multi[i, :1], base_bank), k))

    teacher = models.teacher_for(settings)
    known = {
        (r.doc_id, r.template_id): (r.teacher_reason, int(r.answer_start), int(r.answer_end))
        for r in embedder_pairs.itertuples()
    }
    rows, start, new_labels = [], time.perf_counter(), 0
    for system, per_doc in picks.items():
        for doc_id, chosen in zip(held, per_doc, strict=True):
            title, text = docs.at[doc_id, "title"], docs.at[doc_id, "text"]
            for rank, (e, t, cos) in enumerate(chosen):
                if (doc_id, t) not in known:
                    label = teacher.instantiate(bank.at[t, "template"], title, text)
                    span = answer_span(label.answer_markup, text) if label.reason == "ok" else (-1, -1)
                    known[(doc_id, t)] = (label.reason, *span)
                    new_labels += 1
                why, a_start, a_end = known[(doc_id, t)]
                found = answer_position(tuned, title, text, a_start, a_end) if a_start >= 0 else None
                rows.append(
                    {
                        "system": system,
                        "doc_id": doc_id,
                        "rank": rank,
                        "template_id": t,
                        "embedding": embedding_name(e),
                        "cosine": cos,
                        "compatible": why == "ok",
                        "teacher_reason": why,
                        "answer_relative_position": (found[0] + 0.5) / found[1] if found else None,
                    }
                )
    df = pd.DataFrame(rows, columns=columns)
    context.log.info(f"retrieval_eval: {new_labels} new teacher labels in {time.perf_counter() - start:.1f}s")
    metadata: dict = {
        "heldout_documents": len(held),
        "k": k,
        "embeddings_per_document": n_emb,
        "new_teacher_labels": new_labels,
    }
    for system in picks:
        per_doc = [
            g.sort_values("rank")["compatible"].tolist()
            for _, g in df[df["system"] == system].groupby("doc_id")
        ]
        p = precision_at_k(per_doc, k)
        metadata[f"precision_at_{k}_{system}"] = round(p, 4) if p is not None else "n/a"
    local = df[(df["system"] == "tuned") & df["compatible"] & df["embedding"].str.startswith("local_")]
    local = local[local["answer_relative_position"].notna()]
    chunk = local["embedding"].str.removeprefix("local_").astype(int).tolist()
    r = pearson(chunk, local["answer_relative_position"].tolist())
    metadata["chunk_position_pearson"] = (
        round(r, 4)
        if r is not None
        else f"n/a ({len(local)} compatible local retrievals, need >= 3 and variation)"
    )
    metadata["chunk_position_points"] = len(local)
    metadata["sample"] = md_sample(
        df[df["system"] == "tuned"].merge(documents[["doc_id", "title"]]),
        ["title", "embedding", "template_id", "compatible", "answer_relative_position"],
        n=8,
    )
    return dg.Output(df, metadata=metadata)
