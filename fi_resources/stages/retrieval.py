"""Stage 2 (paper §2): teacher-labelled (document, template) pairs → embedder fine-tuned in two rounds (global
contrastive, then Gaussian-pooled locals on chunk-index labels, with its match threshold calibrated on
held-out labels) → FAISS template index → document matches (one template per embedding: global + K locals)
→ retrieval evaluation on held-out documents.

The encoder is a part like the teacher: stages take an `Encoder` (shared for inference, a fresh copy to train).
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fi_resources.encoder import Encoder
from fi_resources.index import TemplateIndex, build_index
from fi_resources.logic.answer_kind import (
    passage_answers,
    passage_has_answer_shape,
    template_kind,
    title_subject,
)
from fi_resources.logic.calibration import calibrate_threshold, pearson, precision_at_k, split_documents
from fi_resources.logic.passages import is_fallback_title
from fi_resources.logic.pooling import char_to_token_position, nearest_chunk
from fi_resources.logic.sampling import (
    DEFAULT_COMPLEXITY_DISTRIBUTION,
    embedding_name,
    match_per_embedding,
    top_per_embedding,
)
from fi_resources.logic.slot_types import asks_who, slot_head, subject_fits
from fi_resources.logic.templates import (
    asked_coverage,
    asked_words,
    fill_template,
    parse_template,
    template_skeleton,
    word_stems,
)
from fi_resources.parts import CompatibilityLabeler, Progress, ValueTyper
from fi_resources.settings import MatchingSettings, RetrievalSettings
from fi_resources.stages import Distribution, Log, Sample, StageResult, no_log, teacher_stats, value_counts

PAIR_COLUMNS = [
    "doc_id", "template_id", "rank", "base_cosine", "compatible", "teacher_reason", "split",
    "answer_start", "answer_end",
]  # fmt: skip
CHUNK_COLUMNS = ["doc_id", "template_id", "split", "answer_token", "tokens", "relative_position", "chunk"]
MATCH_COLUMNS = [
    "match_id", "doc_id", "shard", "template_id", "query_id", "template", "n_slots", "cosine", "embedding",
]  # fmt: skip
EVAL_COLUMNS = [
    "system", "doc_id", "rank", "template_id", "embedding", "cosine", "compatible", "teacher_reason",
    "answer_relative_position",
]  # fmt: skip
EVAL_K = 6
SEARCH_K = 50  # index hits per embedding that the matching rule samples from


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


def _side_texts(docs: pd.DataFrame, doc_ids) -> list[str]:
    """Document-side encoder inputs of `doc_ids` (`docs` indexed by doc_id)."""
    return [document_side_text(docs.at[d, "title"], docs.at[d, "text"]) for d in doc_ids]


# ---- teacher labels -----------------------------------------------------------------------------
def label_pairs(
    documents: pd.DataFrame,
    descriptions: pd.DataFrame,
    bank: pd.DataFrame,
    encoder: Encoder,
    labeler: CompatibilityLabeler,
    settings: RetrievalSettings,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """Top-k bank templates per described document (untuned encoder, description ↔ description), labelled
    compatible or not by the teacher with the answer's character span, and a seeded train/heldout split by
    source document (all passages of an article on one side)."""
    docs = documents.merge(descriptions[["doc_id", "description"]], on="doc_id")
    if bank.empty or docs.empty:
        return StageResult(
            pd.DataFrame(columns=PAIR_COLUMNS), {"rows": 0, "note": "no templates or documents"}
        )
    sims = (
        encoder.encode(docs["description"].tolist())
        @ encoder.encode(bank["compatible_document_description"].tolist()).T
    )
    # Split by source document: passages of one article on both sides would leak its wording into the test.
    source = docs["source_doc_id"] if "source_doc_id" in docs else docs["doc_id"]
    held_sources = split_documents(source.tolist(), settings.heldout_fraction, settings.seed)
    heldout = set(docs.loc[source.isin(held_sources), "doc_id"])
    total, start, rows = len(docs) * min(settings.embedder_top_k, len(bank)), time.perf_counter(), []
    for i, doc in enumerate(docs.itertuples()):
        for rank, j in enumerate(np.argsort(-sims[i])[: settings.embedder_top_k]):
            label = labeler.label_compatibility(bank.at[j, "template"], doc.title, doc.text)
            rows.append(
                {
                    "doc_id": doc.doc_id,
                    "template_id": bank.at[j, "template_id"],
                    "rank": rank,
                    "base_cosine": float(sims[i, j]),
                    "compatible": label.compatible,
                    "teacher_reason": label.reason,
                    "split": "heldout" if doc.doc_id in heldout else "train",
                    "answer_start": label.answer_start,
                    "answer_end": label.answer_end,
                }
            )
            if progress:
                progress(len(rows), total, time.perf_counter() - start)
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return StageResult(
        df,
        {
            "rows": len(df),
            "documents": int(df["doc_id"].nunique()),
            "heldout_documents": len(heldout),
            "hard_positives": int(df["compatible"].sum()),
            "hard_negatives": int((~df["compatible"]).sum()),
            "labels_per_s": round(len(df) / max(1e-9, time.perf_counter() - start), 1),
            "teacher_reasons": df["teacher_reason"].value_counts().to_dict(),
            **teacher_stats(labeler),
        },
    )


def chunk_labels(
    pairs: pd.DataFrame, documents: pd.DataFrame, encoder: Encoder, settings: RetrievalSettings
) -> StageResult[pd.DataFrame]:
    """Round-2 training data: for each compatible pair, the chunk k (1..K) whose Gaussian centre k/(K+1) is
    nearest the middle of the teacher's answer excerpt, in tokens of the encoder's (truncated) input. Pairs
    whose answer lies past the truncation are dropped and counted."""
    ok = pairs[pairs["compatible"] & (pairs["answer_start"] >= 0)] if len(pairs) else pairs
    docs = documents.set_index("doc_id")
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
    df = pd.DataFrame(rows, columns=CHUNK_COLUMNS)
    return StageResult(
        df,
        {
            "rows": len(df),
            "train_rows": int((df["split"] == "train").sum()),
            "dropped_past_truncation": truncated,
            "chunk_counts": value_counts(df["chunk"]),
            "relative_position_histogram": Distribution(df["relative_position"].tolist(), "answer position"),
        },
    )


# ---- embedder training --------------------------------------------------------------------------
def triplets(
    pairs: pd.DataFrame, docs: pd.DataFrame, bank: pd.DataFrame, rng: random.Random
) -> tuple[list[str], list[str], list[str], list[int]]:
    """(document, compatible description, hard-negative description) per positive row of ``pairs`` (a hard
    negative is an incompatible top-k template of the same document, else a random template), plus the
    row's `chunk` when the frame has one. `docs` and `bank` are indexed by doc_id and template_id."""
    anchors, positives, negatives, chunks = [], [], [], []
    for doc_id, group in pairs.groupby("doc_id", sort=True):
        neg = group[~group["compatible"]]["template_id"].tolist() or [rng.choice(bank.index.tolist())]
        for row in group[group["compatible"]].itertuples():
            anchors.append(document_side_text(docs.at[doc_id, "title"], docs.at[doc_id, "text"]))
            positives.append(bank.at[row.template_id, "compatible_document_description"])
            negatives.append(bank.at[rng.choice(neg), "compatible_document_description"])
            chunks.append(int(getattr(row, "chunk", 0)))
    return anchors, positives, negatives, chunks


def train_global_embedder(
    pairs: pd.DataFrame,
    documents: pd.DataFrame,
    bank: pd.DataFrame,
    encoder: Encoder,
    out: Path,
    settings: RetrievalSettings,
    log: Log = no_log,
) -> StageResult[dict]:
    """Round 1: `encoder` (a fresh copy carrying GaussianPooling) fine-tuned for compatibility on the global
    embedding (MultipleNegativesRanking with the teacher's hard negatives), training documents only, saved
    into `out`. With fewer than 2 triplets the untrained encoder is saved, and the facts say so."""
    train = pairs[pairs["split"] == "train"] if len(pairs) else pairs
    anchors, positives, negatives, _ = triplets(
        train, documents.set_index("doc_id"), bank.set_index("template_id"), random.Random(settings.seed)
    )
    num_local, sigma, alpha = settings.pooling()
    info: dict = {"num_local": num_local, "sigma": sigma, "alpha": alpha}
    if len(anchors) < 2:
        encoder.model.save(str(out))
        return StageResult({**info, "trained": False, "pairs": len(anchors)})
    log(f"round 1: fine-tuning on {len(anchors)} (document, positive, hard negative) triplets")
    stats = encoder.finetune(
        anchors, positives, negatives, out, epochs=settings.embedder_epochs, seed=settings.seed
    )
    return StageResult({**info, "trained": True, "loss": "MultipleNegativesRankingLoss", **stats})


def heldout_pair_scores(
    encoder: Encoder, pairs: pd.DataFrame, docs: pd.DataFrame, bank: pd.DataFrame
) -> np.ndarray:
    """Per labelled pair: the best cosine over the document's K+1 embeddings (the matching rule lets any of
    them retrieve the template)."""
    doc_ids = pairs["doc_id"].unique().tolist()
    multi = encoder.encode_multi(_side_texts(docs, doc_ids))
    row = {d: i for i, d in enumerate(doc_ids)}
    t_emb = encoder.encode([bank.at[t, "compatible_document_description"] for t in pairs["template_id"]])
    d_emb = multi[[row[d] for d in pairs["doc_id"]]]  # (P, K+1, D)
    return np.einsum("pkd,pd->pk", d_emb, t_emb).max(1)


def train_local_embedder(
    chunks: pd.DataFrame,
    pairs: pd.DataFrame,
    documents: pd.DataFrame,
    bank: pd.DataFrame,
    encoder: Encoder,
    out: Path,
    settings: RetrievalSettings,
    matching: MatchingSettings,
    log: Log = no_log,
) -> StageResult[dict]:
    """Round 2: `encoder` (a fresh copy of the round-1 embedder) trained so local embedding k of a document
    matches the template whose answer sits in chunk k (LocalChunkLoss), saved into `out`; then its match
    threshold calibrated on the held-out teacher labels (the cosine maximising F1), else the fallback."""
    bank, docs = bank.set_index("template_id"), documents.set_index("doc_id")
    train = chunks[chunks["split"] == "train"].assign(compatible=True)
    # Incompatible rows of the same documents supply the hard negatives.
    labelled = pd.concat([train, pairs[~pairs["compatible"]].assign(chunk=0)]) if len(pairs) else train
    anchors, positives, negatives, chunk_ids = triplets(
        labelled, docs, bank, random.Random(settings.seed + 1)
    )
    info: dict = {"num_local": encoder.num_local}
    if len(anchors) < 2 or not encoder.num_local:
        encoder.model.save(str(out))
        info |= {"trained": False, "pairs": len(anchors)}
    else:
        log(f"round 2: chunk-label fine-tuning on {len(anchors)} (document, chunk k, template) rows")
        stats = encoder.finetune(
            anchors, positives, negatives, out, epochs=settings.local_embedder_epochs, seed=settings.seed,
            chunk_labels=chunk_ids,
        )  # fmt: skip
        info |= {"trained": True, "loss": "LocalChunkLoss", **stats}
    held = pairs[pairs["split"] == "heldout"] if len(pairs) else pairs
    held = held[held["template_id"].isin(bank.index)]
    if len(held) and encoder.num_local:
        cal = calibrate_threshold(
            heldout_pair_scores(encoder, held, docs, bank).tolist(), held["compatible"].tolist()
        )
    else:
        cal = calibrate_threshold([], [])
    if cal.threshold is not None:
        info |= {
            "match_threshold": round(cal.threshold, 4),
            "threshold_source": "calibrated (max F1, held-out)",
        }
    else:
        info |= {
            "match_threshold": matching.fallback_match_threshold,
            "threshold_source": f"fallback: {cal.reason}",
        }
    info |= {
        "calibration_pairs": cal.n,
        "calibration_positives": cal.positives,
        "calibration_f1": cal.f1,
        "calibration_precision": cal.precision,
        "calibration_recall": cal.recall,
    }
    return StageResult(info)


ENCODE_CHUNK = 8192  # descriptions embedded at a time into the memory-mapped embedding file


def build_template_index(
    bank: pd.DataFrame, encoder: Encoder, out: Path, progress: Progress | None = None
) -> StageResult[dict]:
    """FAISS index in `out` over the bank's compatible document descriptions, embedded by `encoder`.

    The embeddings are written chunk by chunk to a memory-mapped .npy file that the index is built from
    and that is deleted afterwards, so no stage holds the whole bank's float vectors in RAM."""
    texts = bank["compatible_document_description"].tolist() if len(bank) else []
    ids = bank["template_id"].tolist() if len(bank) else []
    if not texts:
        return StageResult(build_index(encoder.encode([]), ids, out))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "embeddings.tmp.npy"
    vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(texts), encoder.dim))
    start = time.perf_counter()
    try:
        for lo in range(0, len(texts), ENCODE_CHUNK):
            chunk = texts[lo : lo + ENCODE_CHUNK]
            vectors[lo : lo + len(chunk)] = encoder.encode(chunk)
            if progress:
                progress(lo + len(chunk), len(texts), time.perf_counter() - start)
        vectors.flush()
        return StageResult(build_index(vectors, ids, out))
    finally:
        del vectors
        path.unlink(missing_ok=True)


# ---- matching -----------------------------------------------------------------------------------
def match_threshold(settings: MatchingSettings, embedder_info: dict) -> tuple[float, str]:
    """The match cosine and where it comes from: the setting, the embedder's calibration, or the fallback."""
    if settings.match_threshold is not None:
        return float(settings.match_threshold), "setting match_threshold"
    if embedder_info.get("match_threshold") is None:
        return settings.fallback_match_threshold, "fallback (embedder has no threshold)"
    return float(embedder_info["match_threshold"]), str(embedder_info.get("threshold_source", "embedder"))


def _keep_hits(
    hits: list[list[tuple[str, float]]], allowed: set[str]
) -> tuple[list[list[tuple[str, float]]], int]:
    """Each embedding's hits whose template is in `allowed`, and how many were dropped."""
    kept = [[(t, c) for t, c in found if t in allowed] for found in hits]
    return kept, sum(len(a) - len(b) for a, b in zip(hits, kept, strict=True))


MATCH_CHUNK = 2048  # documents embedded and searched at a time: memory holds one chunk's embeddings


def match_documents(
    documents: pd.DataFrame,
    bank: pd.DataFrame,
    encoder: Encoder,
    index: TemplateIndex,
    threshold: tuple[float, str],
    shard: str,
    settings: MatchingSettings,
    typer: ValueTyper | None = None,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """Templates for each document (paper's rule): the global and K local embeddings each search the index;
    candidates above the cosine threshold; one complexity-weighted sample per embedding, no duplicates.
    Before sampling, candidates the passage cannot answer or whose slots its subject cannot fill (with a
    `typer`) are dropped, so an embedding's pick is spent on a template the passage fits. Documents go
    through in chunks of MATCH_CHUNK, so a shard of any size holds one chunk's embeddings and hits."""
    bank = bank.set_index("template_id")
    cut, source = threshold
    templates = _TemplateFacts(bank)
    typed = typer is not None and settings.title_type_top_k is not None
    # An embedder without GaussianPooling has the global embedding only.
    n_emb = encoder.num_local + 1 if encoder.num_local else 1
    rows: list[dict] = []
    best: list[float] = []
    dropped = Counter[str]()
    start = time.perf_counter()
    for lo in range(0, len(documents), MATCH_CHUNK):
        part = documents.iloc[lo : lo + MATCH_CHUNK]
        texts = [document_side_text(t, x) for t, x in zip(part["title"], part["text"], strict=True)]
        multi = encoder.encode_multi(texts) if encoder.num_local else encoder.encode(texts)[:, None, :]
        hits = index.search(multi.reshape(len(part) * n_emb, multi.shape[-1]), k=SEARCH_K)
        del multi
        # An untitled row's placeholder title names no subject (""): its matches skip the title's filters.
        subjects = ["" if is_fallback_title(str(t), shard) else str(t) for t in part["title"]]
        named = [s for s in subjects if s]
        subject_types = typer.scores(named, templates.heads) if typed and named else {}  # type: ignore[union-attr]
        docs = zip(part["doc_id"], subjects, part["text"], strict=True)
        for doc_i, (doc_id, subject, text) in enumerate(docs):
            doc_hits = hits[doc_i * n_emb : (doc_i + 1) * n_emb]
            if doc_hits and doc_hits[0]:
                best.append(max(found[0][1] for found in doc_hits if found))
            doc_hits = _fitting_hits(
                doc_hits, templates, subject, text, subject_types.get(subject), settings, dropped
            )
            chosen = match_per_embedding(
                doc_hits,
                templates.n_slots,
                target_distribution=DEFAULT_COMPLEXITY_DISTRIBUTION,
                threshold=cut,
                # Seeded by document, not position: a document gets the same templates in any shard.
                seed=settings.seed * 1_000_003 + zlib.crc32(str(doc_id).encode()),
                max_matches=settings.matches_per_document,
                # "What is <fi>a nation</fi>?" and "What is <fi>a device</fi>?" would ask a passage one question twice.
                same_as=templates.skeletons,
            )
            for e, t, cos in chosen:
                rows.append(
                    {
                        "match_id": f"{doc_id}:{t}",
                        "doc_id": doc_id,
                        "shard": shard,
                        "template_id": t,
                        "query_id": templates.query_ids[t],
                        "template": templates.texts[t],
                        "n_slots": templates.n_slots[t],
                        "cosine": cos,
                        "embedding": embedding_name(e),
                    }
                )
        if progress:
            progress(lo + len(part), len(documents), time.perf_counter() - start)
    df = pd.DataFrame(rows, columns=MATCH_COLUMNS)
    return StageResult(
        df,
        {
            "rows": len(df),
            "documents": len(documents),
            "matched_documents": int(df["doc_id"].nunique()),
            "mean_matches_per_document": round(len(df) / max(1, len(documents)), 2),
            "threshold": cut,
            "threshold_source": source,
            # Index hits dropped before sampling: the passage does not mention what the template asks.
            "hits_dropped_unanswerable": dropped["unanswerable"],
            # ... or it has no answer of the kind the template asks for (no defining sentence, no year).
            "hits_dropped_no_answer_shape": dropped["no_answer_shape"],
            # ... or, its title in the slots, it does not answer that question ("What is Alabama?" on a passage
            # that never says what Alabama is).
            "hits_dropped_title_unanswered": dropped["title_unanswered"],
            # ... or its title is not the kind of thing any of the template's slots asks for.
            "hits_dropped_subject_type": dropped["subject_type"],
            "subject_typed": typed and len(documents) > 0,
            "embeddings_per_document": n_emb,
            "matches_by_embedding": df["embedding"].value_counts().to_dict(),
            "slot_count_mix": value_counts(df["n_slots"]),
            "best_cosine_histogram": Distribution(best, "best cosine per document"),
            "sample": Sample(
                df.merge(documents[["doc_id", "title"]]), ["title", "embedding", "template", "cosine"]
            ),
        },
    )


class _TemplateFacts:
    """What the match filters read of each bank template, computed once per stage."""

    def __init__(self, bank: pd.DataFrame):
        self.n_slots = {t: int(n) for t, n in bank["n_slots"].items()}
        self.query_ids, self.texts = bank["query_id"].to_dict(), bank["template"].to_dict()
        self.asked = {t: asked_words(text) for t, text in bank["template"].items()}
        self.kinds = {t: template_kind(text, self.n_slots[t]) for t, text in bank["template"].items()}
        self.skeletons = {t: template_skeleton(text) for t, text in bank["template"].items()}
        self.slots = {t: parse_template(text).slots for t, text in bank["template"].items()}
        self.who = {t: asks_who(text) for t, text in bank["template"].items()}
        self.heads = sorted({h for s in self.slots.values() for d in s if (h := slot_head(d))})


def _fitting_hits(
    doc_hits: list[list[tuple[str, float]]],
    templates: _TemplateFacts,
    title: str,
    text: str,
    subject_types: dict[str, float] | None,
    settings: MatchingSettings,
    dropped: Counter[str],
) -> list[list[tuple[str, float]]]:
    """One document's hits whose template it can answer, with an answer of the asked kind, and whose slots
    its subject can fill; the rest counted in `dropped` by reason."""
    found_ids = {t for found in doc_hits for t, _ in found}
    if settings.min_asked_coverage > 0:
        stems = word_stems(text)
        answerable = {
            t for t in found_ids if asked_coverage(templates.asked[t], stems) >= settings.min_asked_coverage
        }
        doc_hits, n = _keep_hits(doc_hits, answerable)
        dropped["unanswerable"] += n
    if settings.require_answer_shape:
        shaped = {k: passage_has_answer_shape(k, text) for k in {templates.kinds[t] for t in found_ids}}
        doc_hits, n = _keep_hits(doc_hits, {t for t in found_ids if shaped[templates.kinds[t]]})
        dropped["no_answer_shape"] += n
        # The instantiator fills the slots with the passage's subject, its title: ask that question of the passage.
        subject = title_subject(title)
        answered = {
            t
            for t in found_ids
            if not subject
            or passage_answers(fill_template(templates.texts[t], [subject] * len(templates.slots[t])), text)
        }
        doc_hits, n = _keep_hits(doc_hits, answered)
        dropped["title_unanswered"] += n
    if subject_types is not None:
        top_k = settings.title_type_top_k
        fits = {
            t
            for t in found_ids
            if subject_fits(templates.slots[t], templates.kinds[t], subject_types, top_k, templates.who[t])
        }
        doc_hits, n = _keep_hits(doc_hits, fits)
        dropped["subject_type"] += n
    return doc_hits


# ---- evaluation ---------------------------------------------------------------------------------
def evaluate_retrieval(
    pairs: pd.DataFrame,
    documents: pd.DataFrame,
    bank: pd.DataFrame,
    tuned: Encoder,
    untuned: Encoder,
    labeler: CompatibilityLabeler,
    settings: RetrievalSettings,
    log: Log = no_log,
) -> StageResult[pd.DataFrame]:
    """Held-out documents: precision@6 of teacher-compatible templates for the tuned embedder (global + K
    locals, one per embedding), the untuned encoder with the same Gaussian pooling, and plain mean pooling
    (global top 6); and the Pearson correlation between the retrieving chunk k and the answer's position.
    Pairs the teacher did not label yet are labelled here."""
    held = sorted(pairs.loc[pairs["split"] == "heldout", "doc_id"].unique()) if len(pairs) else []
    held = held[: settings.eval_max_documents]
    reason = "no valid templates" if bank.empty else "no held-out labelled documents" if not held else ""
    if reason:
        return StageResult(
            pd.DataFrame(columns=EVAL_COLUMNS), {"rows": 0, "precision_at_6": f"n/a ({reason})"}
        )
    bank, docs = bank.set_index("template_id"), documents.set_index("doc_id")
    texts, descriptions = _side_texts(docs, held), bank["compatible_document_description"].tolist()
    ids = bank.index.tolist()
    k = min(EVAL_K, len(ids))

    def ranked(doc_emb: np.ndarray, bank_emb: np.ndarray) -> list[list[tuple[str, float]]]:
        sims = doc_emb @ bank_emb.T
        return [[(ids[j], float(s[j])) for j in np.argsort(-s)[: k + 10]] for s in sims]

    tuned_multi, tuned_bank = tuned.encode_multi(texts), tuned.encode(descriptions)
    base_multi, base_bank = untuned.encode_multi(texts), untuned.encode(descriptions)
    picks: dict[str, list[list[tuple[int, str, float]]]] = {
        "tuned": [top_per_embedding(ranked(m, tuned_bank), k) for m in tuned_multi],
        "untuned": [top_per_embedding(ranked(m, base_bank), k) for m in base_multi],
        "mean_pooling": [top_per_embedding(ranked(m[:1], base_bank), k) for m in base_multi],
    }
    known = {
        (r.doc_id, r.template_id): (r.teacher_reason, int(r.answer_start), int(r.answer_end))
        for r in pairs.itertuples()
    }
    rows, start, new_labels = [], time.perf_counter(), 0
    for system, per_doc in picks.items():
        for doc_id, chosen in zip(held, per_doc, strict=True):
            title, text = docs.at[doc_id, "title"], docs.at[doc_id, "text"]
            for rank, (e, t, cos) in enumerate(chosen):
                if (doc_id, t) not in known:
                    label = labeler.label_compatibility(bank.at[t, "template"], title, text)
                    known[(doc_id, t)] = (label.reason, label.answer_start, label.answer_end)
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
    df = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    log(f"{new_labels} new teacher labels in {time.perf_counter() - start:.1f}s")
    stats: dict[str, object] = {
        "heldout_documents": len(held),
        "k": k,
        "embeddings_per_document": tuned_multi.shape[1],
        "new_teacher_labels": new_labels,
        **_evaluation_stats(df, documents, list(picks), k),
        **teacher_stats(labeler),
    }
    return StageResult(df, stats)


def _evaluation_stats(df: pd.DataFrame, documents: pd.DataFrame, systems: list[str], k: int) -> dict:
    """precision@k per system, the chunk-index ↔ answer-position correlation of the tuned locals, a sample."""
    stats: dict[str, object] = {}
    for system in systems:
        per_doc = [
            g.sort_values("rank")["compatible"].tolist()
            for _, g in df[df["system"] == system].groupby("doc_id")
        ]
        p = precision_at_k(per_doc, k)
        stats[f"precision_at_{k}_{system}"] = round(p, 4) if p is not None else "n/a"
    local = df[(df["system"] == "tuned") & df["compatible"] & df["embedding"].str.startswith("local_")]
    local = local[local["answer_relative_position"].notna()]
    r = pearson(
        local["embedding"].str.removeprefix("local_").astype(int).tolist(),
        local["answer_relative_position"].tolist(),
    )
    stats["chunk_position_pearson"] = (
        round(r, 4)
        if r is not None
        else f"n/a ({len(local)} compatible local retrievals, need >= 3 and variation)"
    )
    stats["chunk_position_points"] = len(local)
    stats["sample"] = Sample(
        df[df["system"] == "tuned"].merge(documents[["doc_id", "title"]]),
        ["title", "embedding", "template_id", "compatible", "answer_relative_position"],
        n=8,
    )
    return stats
