"""The retrieval assets on hand-made inputs with the tiny random models: chunk labels → round-2 embedder
(threshold calibrated) → index → per-embedding matches → held-out evaluation."""

import dagster as dg
import pandas as pd
import pytest

from fi_assets import retrieval
from fi_assets.definitions import build_resources

SENTENCES = [
    "The river flows through the old town and past the mill.",
    "Farmers grow wheat and barley on the northern plains.",
    "A stone bridge built in 1820 connects the two banks.",
    "The museum holds paintings by local artists of the valley.",
    "Every spring the town hosts a festival with music and food.",
    "The railway station opened in 1870 and still serves trains.",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model_cache):
    resources = build_resources("tiny", home=str(tmp_path_factory.mktemp("fi")), heldout_fraction=0.34)
    docs = pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(6)],
            "shard": "s",
            "title": [f"Town {i}" for i in range(6)],
            "text": [" ".join(SENTENCES[i:] + SENTENCES[:i]) for i in range(6)],
        }
    )
    bank = pd.DataFrame(
        {
            "template_id": [f"t{j}" for j in range(8)],
            "query_id": [f"q{j}" for j in range(8)],
            "template": [f"What is <fi>a place</fi> known for {j}?" for j in range(8)],
            "compatible_document_description": [SENTENCES[j % 6] for j in range(8)],
            "n_slots": [1, 2, 1, 3, 1, 2, 1, 1],
            "valid": True,
        }
    )
    rows = []
    for i, d in enumerate(docs.itertuples()):
        for r, j in enumerate(range(i % 3, i % 3 + 3)):
            start = d.text.find(SENTENCES[j % 6])
            ok = r < 2
            rows.append(
                {
                    "doc_id": d.doc_id, "template_id": f"t{j}", "rank": r, "base_cosine": 0.5,
                    "compatible": ok, "teacher_reason": "ok" if ok else "no_filler",
                    "split": "heldout" if i >= 4 else "train",
                    "answer_start": start if ok else -1,
                    "answer_end": start + len(SENTENCES[j % 6]) if ok else -1,
                }
            )  # fmt: skip
    return resources, docs, bank, pd.DataFrame(rows)


def test_retrieval_chain(inputs):
    resources, docs, bank, pairs = inputs
    with dg.build_asset_context() as ctx, dg.build_asset_context(partition_key="s") as shard_ctx:
        _check_chain(ctx, shard_ctx, docs, bank, pairs, resources)


def _check_chain(ctx, shard_ctx, docs, bank, pairs, r):
    models, warehouse = r["models"], r["warehouse"]
    retrieval_settings, matching_settings = r["retrieval_settings"], r["matching_settings"]
    labels = retrieval.chunk_labels(pairs, docs, models, retrieval_settings).value
    assert len(labels) == int(pairs["compatible"].sum())
    assert labels["chunk"].between(1, retrieval_settings.pooling_num_local).all()
    # Answers at the start of the text land in early chunks, answers at the end in late ones.
    first = labels[labels["relative_position"] < 0.2]["chunk"]
    assert (first == 1).all()

    round1 = retrieval.retrieval_embedder(ctx, pairs, docs, bank, models, retrieval_settings, warehouse).value
    assert round1.info["trained"] and round1.info["num_local"] == 5
    final = retrieval.local_embedder(
        ctx, labels, pairs, round1, docs, bank, models, retrieval_settings, matching_settings, warehouse
    ).value
    assert final.info["trained"] and final.info["loss"] == "LocalChunkLoss"
    assert final.info["calibration_pairs"] == int((pairs["split"] == "heldout").sum())
    assert isinstance(final.info["match_threshold"], float) and final.info["threshold_source"]

    index = retrieval.template_index(ctx, bank, final, models, warehouse).value
    matches = retrieval.document_matches(shard_ctx, docs, bank, final, index, models, matching_settings).value
    per_doc = matches.groupby("doc_id")
    assert per_doc.size().max() <= matching_settings.matches_per_document
    assert per_doc["template_id"].apply(lambda s: s.is_unique).all()
    assert per_doc["embedding"].apply(lambda s: s.is_unique).all()  # one template per embedding
    assert set(matches["embedding"]) <= {"global", *(f"local_{k}" for k in range(1, 6))}
    again = retrieval.document_matches(shard_ctx, docs, bank, final, index, models, matching_settings).value
    pd.testing.assert_frame_equal(matches, again)  # deterministic under the seed

    result = retrieval.retrieval_eval(
        ctx, pairs, docs, bank, final, models, r["teacher_settings"], retrieval_settings
    )
    ev, md = result.value, result.metadata
    assert set(ev["system"]) == {"tuned", "untuned", "mean_pooling"}
    assert ev["doc_id"].isin(pairs.loc[pairs["split"] == "heldout", "doc_id"]).all()
    for system in ("tuned", "untuned", "mean_pooling"):
        assert 0.0 <= md[f"precision_at_6_{system}"].value <= 1.0
    assert "chunk_position_pearson" in md


def test_retrieval_eval_reports_na_without_heldout_documents(inputs, tmp_path):
    resources, docs, bank, pairs = inputs
    ctx = dg.build_asset_context()
    train_only = pairs.assign(split="train")
    resources["models"].parts().store.encoder().model.save(str(tmp_path))  # an untrained "final" embedder
    embedder = retrieval.Artifact(path=str(tmp_path), info={})
    out = retrieval.retrieval_eval(
        ctx, train_only, docs, bank, embedder, resources["models"], resources["teacher_settings"],
        resources["retrieval_settings"],
    )  # fmt: skip
    assert out.value.empty and "n/a" in out.metadata["precision_at_6"].value
