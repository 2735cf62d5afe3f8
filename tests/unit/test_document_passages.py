"""Shard files → passage rows (fi_resources.sources.read_document_shard), and pairs made from a passage
whose excerpt spans land on the source document's text (fi_resources.stages.generation.instantiate_pairs)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fi_resources.backends import BackendStats
from fi_resources.settings import DocumentSettings, InstantiationSettings
from fi_resources.sources import DOCUMENT_COLUMNS, read_document_shard, source_documents
from fi_resources.stages.documents import ShardPassages, shard_documents
from fi_resources.stages.generation import instantiate_pairs


def article(n_sections: int) -> str:
    sections = [
        f"== Section {k} ==\n\n"
        + " ".join(f"Fact {k}.{i} about the harbour town is recorded." for i in range(25))
        for k in range(n_sections)
    ]
    return "The harbour town is a small place on the coast. It has a long history.\n\n" + "\n\n".join(
        sections
    )


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    rows = [
        {"title": "Long", "text": article(6)},
        {"title": "Single", "text": "A document of one passage only. " * 10},
        {"title": "Empty", "text": "   \n "},
        {"title": "Tiny", "text": "Too short to use."},
        {"title": "Huge", "text": article(400)},
    ]
    path = tmp_path / "shard.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    return path


def test_one_row_per_kept_passage_with_its_place_in_the_source(shard):
    df, tally = read_document_shard(shard, DocumentSettings(passages_per_document=0, max_source_chars=50_000))
    assert list(df.columns) == DOCUMENT_COLUMNS and df["doc_id"].is_unique
    sources = {d.source_doc_id: d for d in source_documents(shard)}
    for row in df.itertuples():
        source = sources[row.source_doc_id].text
        assert source[row.offset : row.offset + len(row.text)] == row.text  # verbatim, at its offset
        assert len(row.text) <= 1200 and row.source_chars == len(source)
    by_title = df.groupby("title")
    assert by_title.size()["Single"] == 1
    single = df[df["title"] == "Single"].iloc[0]
    assert single["doc_id"] == single["source_doc_id"] and single["offset"] == 0  # the parent's id
    long = df[df["title"] == "Long"]
    assert long["passage"].tolist() == list(range(len(long))) and len(long) > 3
    assert long["doc_id"].tolist() == [f"{long['source_doc_id'].iloc[0]}-{i:03d}" for i in range(len(long))]
    assert tally.dropped == {"empty": 1, "too_short": 1, "duplicate": 0, "not_text": 0, "invalid_unicode": 0}
    assert tally.cut_documents == 1  # the huge one is split up to 50,000 characters only
    huge = df[df["title"] == "Huge"]
    assert (huge["offset"] + huge["text"].str.len()).max() <= 50_000
    assert tally.source_documents == 5 and tally.passages_split == len(df) + tally.passages_dropped["short"]


def test_the_sample_keeps_the_lead_and_the_same_passages_every_time(shard):
    settings = DocumentSettings(passages_per_document=3)
    first, tally = read_document_shard(shard, settings)
    again, _ = read_document_shard(shard, settings)
    pd.testing.assert_frame_equal(first, again)
    for _, passages in first.groupby("source_doc_id"):
        assert passages["passage"].iloc[0] == 0 and len(passages) <= 3
    assert tally.passages_dropped["not_sampled"] > 0
    other, _ = read_document_shard(shard, DocumentSettings(passages_per_document=3, seed=1))
    assert set(other["doc_id"]) != set(first["doc_id"])  # the seed moves the sample


def test_stage_metadata_says_how_much_text_is_used(shard):
    result = shard_documents(shard, "s0", DocumentSettings(passages_per_document=2))
    stats = result.stats
    assert result.value["shard"].eq("s0").all()
    assert stats["source_documents"] == 5 and stats["passages_kept"] == len(result.value)
    assert stats["passages_split"] > stats["passages_kept"]
    assert 0.95 < stats["text_share_split"] <= 1.0
    assert 0 < stats["text_share_used"] < stats["text_share_split"]
    assert stats["dropped"].counts["empty"] == 1 and stats["passages_dropped"].counts["not_sampled"] > 0


def test_passages_in_batches_are_the_passages_of_the_whole_shard(shard):
    settings = DocumentSettings(passages_per_document=0, max_source_chars=50_000)
    whole = shard_documents(shard, "s0", settings)
    passages = ShardPassages(shard, "s0", settings, batch_rows=8)
    frames = list(passages.batches())
    assert len(frames) == 2  # batches end after a document: its passages stay in one frame
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole.value)
    stats = passages.stats()
    for key in ("rows", "documents_with_passages", "mean_chars", "text_share_used", "passages_split"):
        assert stats[key] == whole.stats[key], key
    assert stats["documents_with_passages"] == whole.value["source_doc_id"].nunique() == 3
    assert stats["mean_chars"] == round(whole.value["text"].str.len().mean(), 1)
    pd.testing.assert_frame_equal(stats["sample"].frame, whole.value.head(5))


def test_a_shard_with_no_passage_gives_one_typed_empty_batch(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"title": "Tiny", "text": "Too short."}) + "\n", encoding="utf8")
    passages = ShardPassages(path, "e", DocumentSettings())
    (frame,) = list(passages.batches())
    assert frame.empty and frame["offset"].dtype == "int64"
    assert passages.stats()["empty_reason"].startswith("all 1 documents were dropped")


class CopyingStudent:
    """Answers every prompt by copying the passage's last sentence with excerpt markers."""

    stats = BackendStats()

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None):
        outputs = []
        for prompt in prompts:
            document = prompt.split("\nDocument: ", 1)[1].rsplit("\nOutput:", 1)[0]
            sentence = document.rsplit(". ", 1)[-1]
            words = sentence.split()
            marker = f"{' '.join(words[:3])}<...>{' '.join(words[-3:])}"
            outputs.append(f"Instruction: What does the text say?\nAnswer: <excerpt>{marker}</excerpt>")
        return outputs

    def chat_prompt(self, user: str) -> str:
        return user


def test_pair_spans_are_in_source_coordinates(shard):
    documents, _ = read_document_shard(shard, DocumentSettings(passages_per_document=0))
    documents.insert(1, "shard", "s0")
    later = documents[documents["offset"] > 0].head(3)
    assert len(later) == 3
    matches = pd.DataFrame(
        {
            "match_id": [f"m{i}" for i in range(len(later))],
            "doc_id": later["doc_id"].tolist(),
            "shard": "s0",
            "template_id": "t0",
            "query_id": "q0",
            "template": "What does <fi>the text</fi> say?",
        }
    )
    result = instantiate_pairs(
        matches, documents, CopyingStudent(), "copier", lambda s: len(s.split()), InstantiationSettings()
    )
    pairs = result.value
    assert (pairs["status"] == "ok").all(), pairs["status"].tolist()
    sources = {d.source_doc_id: d.text for d in source_documents(shard)}
    for pair, doc in zip(pairs.itertuples(), later.itertuples(), strict=True):
        assert pair.source_doc_id == doc.source_doc_id
        (start, end), (local_start, local_end) = (
            json.loads(pair.excerpt_spans)[0],
            json.loads(pair.passage_spans)[0],
        )
        assert sources[doc.source_doc_id][start:end] == pair.answer  # lands on the source text
        assert doc.text[local_start:local_end] == pair.answer and start == local_start + doc.offset
