"""Documents: one shard file → passages (the documents of every later stage); the teacher describes each
one in one sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fi_resources.logic.prompts import FALLBACK_DESCRIPTION_PREFIX
from fi_resources.parts import DocumentDescriber, Progress
from fi_resources.settings import DocumentSettings
from fi_resources.sources import ShardTally, iter_document_batches
from fi_resources.stages import Counts, Sample, StageResult, teacher_stats

SAMPLE_ROWS = 5


def shard_documents(path: Path, shard: str, settings: DocumentSettings) -> StageResult[pd.DataFrame]:
    """A shard file's documents as passages of at most `passage_chars` (one row each; `doc_id` is the
    passage's key downstream, `source_doc_id` and `offset` place it in its source text), a seeded sample of
    `passages_per_document` per document, as one frame (`ShardPassages` streams them). Raises
    `InputFileError` naming the file (and line) when it cannot be read."""
    passages = ShardPassages(path, shard, settings)
    frames = list(passages.batches())
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return StageResult(df, passages.stats())


class ShardPassages:
    """`shard_documents` in batches, for a shard of any size: `batches()` reads the file once, a frame of
    about `batch_rows` passages at a time; `stats()` once they are all read."""

    def __init__(self, path: Path, shard: str, settings: DocumentSettings, batch_rows: int = 4096) -> None:
        self.path, self.shard, self.settings, self.batch_rows = path, shard, settings, batch_rows
        self.tally = ShardTally()
        self.head = pd.DataFrame()  # the first rows, for the sample

    def batches(self) -> Iterator[pd.DataFrame]:
        for df in iter_document_batches(self.path, self.settings, self.tally, self.batch_rows):
            df.insert(1, "shard", self.shard)
            if self.head.empty:
                self.head = df.head(SAMPLE_ROWS)
            yield df

    def stats(self) -> dict[str, object]:
        return passage_stats(self.tally, self.head)


def passage_stats(tally: ShardTally, head: pd.DataFrame) -> dict[str, object]:
    """How much of the shard's text reaches the pipeline, and why the rest does not (`head`: the first
    kept rows, shown as a sample)."""
    kept_documents = tally.source_documents - sum(tally.dropped.values())
    rows = tally.passages_kept
    return {
        "rows": rows,
        "source_documents": tally.source_documents,
        "documents_with_passages": tally.documents_with_passages,
        "passages_split": tally.passages_split,
        "passages_kept": rows,
        # Shares of the source characters: in any passage, and in the passages kept as rows.
        "text_share_split": _share(tally.split_chars, tally.source_chars),
        "text_share_used": _share(tally.kept_chars, tally.source_chars),
        "source_chars": tally.source_chars,
        "cut_documents": tally.cut_documents,
        "dropped": Counts(tally.dropped, total=tally.source_documents),
        "passages_dropped": Counts(tally.passages_dropped, total=tally.passages_split),
        "titles_changed": Counts(tally.titles, total=tally.source_documents),
        "passages_per_document": round(rows / kept_documents, 2) if kept_documents else 0.0,
        "mean_chars": round(tally.kept_chars / rows, 1) if rows else 0.0,
        "sample": Sample(head, ["doc_id", "passage", "offset", "title", "text"], n=SAMPLE_ROWS),
        "empty_reason": empty_reason(tally) if not rows else None,
    }


def empty_reason(tally: ShardTally) -> str:
    """Why a shard gave no passage: an empty partition downstream assets pass through, said in words."""
    if not tally.source_documents:
        return "the file has no rows"
    causes = ", ".join(f"{k} {v}" for k, v in tally.dropped.items() if v)
    return f"all {tally.source_documents} documents were dropped ({causes or 'no usable passage'})"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def describe_documents(
    documents: pd.DataFrame, describer: DocumentDescriber, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """One description per document, by the teacher chosen for the `describe` job."""
    descriptions = describer.describe_documents(
        documents["title"].tolist(), documents["text"].tolist(), progress=progress
    )
    df = pd.DataFrame(
        {
            "doc_id": documents["doc_id"],
            "shard": documents["shard"],
            # A Series of str: an empty shard's [] would otherwise be a float column.
            "description": pd.Series(descriptions, index=documents.index, dtype="str"),
            "teacher": describer.name,
        }
    )
    stats: dict[str, object] = {
        "rows": len(df),
        "fallback_descriptions": int(df["description"].str.startswith(FALLBACK_DESCRIPTION_PREFIX).sum()),
    }
    stats |= teacher_stats(describer)
    stats["sample"] = Sample(df.merge(documents[["doc_id", "title"]]), ["title", "description"])
    return StageResult(df, stats)
