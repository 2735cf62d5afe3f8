"""Input text: real user questions, Wikipedia articles shipped in packages, and the user's own files."""

from __future__ import annotations

import bz2
import hashlib
import importlib.resources as ir
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fi_resources.inbox import INPUT_SUFFIXES, InputFileError, Refusal, entry_problem, stat_problem
from fi_resources.logic.passages import (
    fallback_title,
    passage_doc_id,
    sample_passages,
    source_limit,
    split_passages,
)
from fi_resources.settings import DocumentSettings

GENSIM_WIKI = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def stable_id(*parts: str, n: int = 12) -> str:
    # surrogatepass: the same id for any valid text, and an id (not a crash) for a lone surrogate.
    return hashlib.sha1("\x1f".join(parts).encode("utf8", "surrogatepass")).hexdigest()[:n]


def chatterbot_questions() -> pd.DataFrame:
    """Question-first turns from chatterbot-corpus (real, hand-written; BSD-3)."""
    import yaml

    root = ir.files("chatterbot_corpus") / "data/english"
    rows = []
    for f in sorted(root.iterdir(), key=lambda p: p.name):
        if not f.name.endswith(".yml"):
            continue
        convs = yaml.safe_load(f.read_text(encoding="utf8")).get("conversations") or []
        for conv in convs:
            if conv and str(conv[0]).strip().endswith("?"):
                rows.append({"query": str(conv[0]).strip(), "source": f"chatterbot-corpus/{f.name}"})
    return pd.DataFrame(rows)


ROW_BATCH = 512  # Parquet rows / CSV rows read at a time: a file of any size is read in bounded memory


def read_table_file(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """A whole JSONL/Parquet/CSV file (for small inputs such as query files); see `iter_table_rows`."""
    return pd.DataFrame(
        [{"title": title, "text": text} for title, text in iter_table_rows(path, text_columns)], dtype=object
    )


def iter_table_rows(path: Path, text_columns: tuple[str, ...]) -> Iterator[tuple[object, object]]:
    """(title, text) of each row of a JSONL/Parquet/CSV file, streamed: JSONL a line at a time, Parquet a
    batch of rows of the two columns at a time, CSV in chunks. The text is the first of `text_columns`
    present (in a JSONL file: in its first row); values are as read (strings, missing values or whatever
    else the file holds): `cell_text` sorts them. Raises `InputFileError` naming the file (and line)."""
    readers = {".jsonl": _jsonl_rows, ".parquet": _parquet_rows, ".csv": _csv_rows}
    reader = readers.get(path.suffix)
    if reader is None:
        raise InputFileError(f"{path}: unsupported file type (use {', '.join(INPUT_SUFFIXES)})")
    try:
        yield from reader(path, text_columns)
    except InputFileError:
        raise
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from exc
    except Exception as exc:  # pyarrow/pandas raise many types for a corrupt file
        raise InputFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc


def _text_column(path: Path, columns: list[str], text_columns: tuple[str, ...], where: str = "") -> str:
    col = next((c for c in text_columns if c in columns), None)
    if col is None:
        raise InputFileError(f"{path}: {where}needs one of the columns {list(text_columns)}; found {columns}")
    return col


def _parquet_rows(path: Path, text_columns: tuple[str, ...]) -> Iterator[tuple[object, object]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        col = _text_column(path, f.schema_arrow.names, text_columns)
        has_title = "title" in f.schema_arrow.names and col != "title"
        for batch in f.iter_batches(batch_size=ROW_BATCH, columns=["title", col] if has_title else [col]):
            texts = batch.column(col).to_pylist()
            titles = batch.column("title").to_pylist() if has_title else [None] * len(texts)
            yield from zip(titles, texts, strict=True)


def _csv_rows(path: Path, text_columns: tuple[str, ...]) -> Iterator[tuple[object, object]]:
    # Every cell as written: "007" stays "007", "NA" stays text; an empty cell is "".
    with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=ROW_BATCH) as chunks:
        col = None
        for chunk in chunks:
            col = col or _text_column(path, list(chunk.columns), text_columns)
            titles = chunk["title"] if "title" in chunk.columns else [None] * len(chunk)
            yield from zip(titles, chunk[col], strict=True)
        if col is None:  # a header-only file has no chunk
            _text_column(path, list(pd.read_csv(path, nrows=0).columns), text_columns)


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _jsonl_rows(path: Path, text_columns: tuple[str, ...]) -> Iterator[tuple[object, object]]:
    """One JSON object per line; an error names the line (bytes are decoded per line for that)."""
    col = None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf8")  # a BOM may open the file
            except UnicodeDecodeError as exc:
                raise InputFileError(
                    f"{path}: line {n} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from exc
            ended = raw.endswith(b"\n")
            del raw  # a huge line is held once as text and once parsed, not also as bytes
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                cut = "" if ended else "; the file may be cut short"
                raise InputFileError(f"{path}: line {n} is not valid JSON ({exc.msg}{cut})") from exc
            del line
            if not isinstance(row, dict):
                what = _JSON_TYPES.get(type(row), "null")
                raise InputFileError(f"{path}: line {n} is {what}, not a JSON object with a text field")
            col = col or _text_column(path, list(row), text_columns, f"line {n} (the first row) ")
            yield row.get("title"), row.get(col)


def cell_text(value: object) -> tuple[str, str | None]:
    """A text cell as a string, and why it is refused (None when usable). A missing value is "" (an empty
    text); a list, dict, number or anything else is refused as "not_text", never turned into its repr."""
    if isinstance(value, str):
        return value, None
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "", None
    return "", "not_text"


def read_user_query_files(folder: Path) -> tuple[pd.DataFrame, list[Refusal]]:
    """Queries from the user's files, and the entries refused as the document inbox refuses them (a symlink
    out of the folder is never read). Cells that are not text become "" (dropped for their length)."""
    frames, refused = [], []
    root = folder.resolve()
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        problem = entry_problem(path, root) or stat_problem(path)[1]
        if problem:
            refused.append(Refusal(path.name, problem))
            continue
        df = read_table_file(path, ("query", "question", "text", "prompt"))
        queries = pd.Series([cell_text(v)[0] for v in df["text"]], dtype=object).str.strip()
        frames.append(pd.DataFrame({"query": queries, "source": f"user/{path.name}"}))
    queries = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["query", "source"])
    return queries, refused


def wikipedia_articles() -> list[tuple[str, str]]:
    """The 106 real English Wikipedia articles in gensim's test data (CC BY-SA), as (title, plain text)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = ir.files("gensim") / GENSIM_WIKI
    if not path.is_file():
        raise RuntimeError(f"gensim's Wikipedia test file is missing ({path}); install gensim==4.4.0")
    out = []
    with bz2.open(path) as f:
        for title, text, _ in extract_pages(f):
            if ":" in title or text.lstrip().upper().startswith("#REDIRECT"):
                continue
            plain = filter_wiki(text).replace("'''", "").replace("''", "")
            out.append((title, clean_wiki_text(plain)))
    return out


def question_source_articles(n: int, shard_articles: int, eval_articles: int = 20) -> list[tuple[str, str]]:
    """The last `n` packaged Wikipedia articles that are neither in the built-in document shards (the first
    `shard_articles` long ones, as `write_builtin_shards` takes them) nor in the pretraining eval's unseen
    articles (the first `eval_articles` of the rest): questions are written about texts the pipeline never
    matches or evaluates on."""
    articles = wikipedia_articles()
    shards = {t for t, x in [a for a in articles if len(a[1]) > 1500][:shard_articles]}
    unseen = [t for t, _ in articles if t not in shards][:eval_articles]
    held = [(t, x) for t, x in articles if len(x) > 1500 and t not in shards and t not in set(unseen)]
    return held[-n:] if n > 0 else []


def clean_wiki_text(text: str) -> str:
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"[ \t]+", " ", text)
    lines = [ln.strip() for ln in text.split("\n")]
    # Drop leftover table/markup rows; keep prose and section headings.
    lines = [ln for ln in lines if not ln.startswith(("|", "!", "{", "}")) and "thumb|" not in ln]
    return "\n".join(lines).strip()


def lead_document(text: str, max_chars: int, min_chars: int = 200) -> str:
    """The old document-length policy, kept as the baseline of `bench/passage_coverage.py` and for
    `bench/bench_pooling.py`: whole paragraphs from the start, cut at a sentence end by max_chars."""
    paras = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40 and not p.strip().startswith("=")]
    out = ""
    for p in paras:
        if len(out) + len(p) + 2 <= max_chars:
            out = f"{out}\n\n{p}" if out else p
            continue
        room = max_chars - len(out) - 2
        cut = p[:room]
        end = max(cut.rfind(". "), cut.rfind(".\n"))
        if end > 0:
            out = f"{out}\n\n{cut[: end + 1]}" if out else cut[: end + 1]
        break
    return out if len(out) >= min_chars else ""


def write_builtin_shards(folder: Path, n_shards: int, docs_per_shard: int) -> list[Path]:
    """Write the packaged Wikipedia articles as JSONL shards (skipped when a shard already exists)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"wikipedia-{i:03d}.jsonl" for i in range(n_shards)]
    if all(p.exists() for p in paths):
        return paths
    articles = [(t, x) for t, x in wikipedia_articles() if len(x) > 1500]
    for i, path in enumerate(paths):
        if path.exists():
            continue
        chunk = articles[i * docs_per_shard : (i + 1) * docs_per_shard]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf8") as f:
            for title, text in chunk:
                f.write(
                    json.dumps({"title": title, "text": text, "source": "wikipedia (gensim test data)"})
                    + "\n"
                )
        tmp.rename(path)
    return paths


DOCUMENT_COLUMNS = ["doc_id", "source_doc_id", "passage", "offset", "title", "text", "source_chars"]
# Typed even when a shard keeps no passage, so an empty partition reads back like any other.
DOCUMENT_DTYPES = {
    **dict.fromkeys(["doc_id", "source_doc_id", "title", "text"], "str"),
    **dict.fromkeys(["passage", "offset", "source_chars"], "int64"),
}


@dataclass(frozen=True)
class SourceDocument:
    """One row of a shard file: its stable id (file name, row number, start of its text) and its text."""

    source_doc_id: str
    row: int
    title: str
    text: str
    refused: str | None = None  # why the text is unusable ("not_text": a list, dict, number...); text is ""
    title_fix: str | None = None  # "cut" (longer than the cap) or "not_text" (replaced by the fallback)


@dataclass
class ShardTally:
    """What became of a shard's text: documents and passages by outcome, and their characters."""

    source_documents: int = 0
    source_chars: int = 0
    passages_split: int = 0
    split_chars: int = 0
    kept_chars: int = 0
    passages_kept: int = 0
    documents_with_passages: int = 0
    cut_documents: int = 0  # longer than max_source_chars: split up to a boundary before that length
    # Source documents dropped whole, and passages of the kept ones that are not rows.
    dropped: dict[str, int] = field(
        default_factory=lambda: {
            "empty": 0,
            "too_short": 0,
            "duplicate": 0,  # the exact text of an earlier row of the shard
            "not_text": 0,
            "invalid_unicode": 0,  # lone surrogates (from JSON escapes): not storable as UTF-8
        }
    )
    passages_dropped: dict[str, int] = field(default_factory=lambda: {"short": 0, "not_sampled": 0})
    # Titles changed before any model sees them: cut to max_title_chars, or not text (the fallback is used).
    titles: dict[str, int] = field(default_factory=lambda: {"cut": 0, "not_text": 0})


def source_documents(path: Path, max_title_chars: int = 300) -> Iterator[SourceDocument]:
    """The rows of a shard file with their stable ids, in file order. Raises `InputFileError`."""
    rows = iter_table_rows(path, ("text", "content", "document", "body"))
    for i, (title, value) in enumerate(rows):
        text, refused = cell_text(value)
        fallback = fallback_title(path.stem, i)
        title, title_fix = _title(title, max_title_chars)
        yield SourceDocument(
            stable_id(path.name, str(i), text[:200]), i, title or fallback, text, refused, title_fix
        )


def _title(value: object, max_chars: int) -> tuple[str, str | None]:
    """A row's title, cut to `max_chars` (a 489 KB title once ran uncut into the teacher), and how it was
    changed; "" when it has none or it is not text (the caller then uses the fallback)."""
    title, refused = cell_text(value)
    if refused is None and not _encodable(title[:max_chars]):
        refused = "not_text"
    if refused is not None:
        return "", refused
    if len(title) > max_chars:
        return title[:max_chars], "cut"
    return title, None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf8")
    except UnicodeEncodeError:
        return False
    return True


def read_document_shard(path: Path, settings: DocumentSettings) -> tuple[pd.DataFrame, ShardTally]:
    """One shard file → one row per kept passage (`DOCUMENT_COLUMNS`) and what became of the rest."""
    tally = ShardTally()
    frames = list(iter_document_batches(path, settings, tally))
    return (pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]), tally


def iter_document_batches(
    path: Path, settings: DocumentSettings, tally: ShardTally, batch_rows: int = 4096
) -> Iterator[pd.DataFrame]:
    """A shard file's kept passages (`DOCUMENT_COLUMNS`) as frames of about `batch_rows` rows (a document's
    passages stay in one frame), counted into `tally` as they are read; at least one frame, typed even
    when it is empty. Memory holds one frame, whatever the file's size."""
    rows: list[dict] = []
    seen: set[bytes] = set()
    yielded = False
    for doc in source_documents(path, settings.max_title_chars):
        tally.source_documents += 1
        tally.source_chars += len(doc.text)
        if doc.title_fix:
            tally.titles[doc.title_fix] += 1
        reason = _drop_reason(doc, seen)
        if reason:
            tally.dropped[reason] += 1
            continue
        passages = document_passages(doc, settings, tally)
        tally.documents_with_passages += bool(passages)
        rows += passages
        if len(rows) >= batch_rows:
            yield pd.DataFrame(rows, columns=DOCUMENT_COLUMNS)
            rows, yielded = [], True
    if rows or not yielded:
        df = pd.DataFrame(rows, columns=DOCUMENT_COLUMNS)
        yield df.astype(DOCUMENT_DTYPES) if df.empty else df


def _drop_reason(doc: SourceDocument, seen: set[bytes]) -> str | None:
    """Why a whole document is dropped (None when it is kept); `seen` holds the kept texts' hashes."""
    if doc.refused:
        return doc.refused
    if not doc.text or doc.text.isspace():  # not .strip(): that copies a text of any size
        return "empty"
    try:
        digest = hashlib.sha1(doc.text.encode("utf8")).digest()
    except UnicodeEncodeError:
        return "invalid_unicode"
    if digest in seen:
        return "duplicate"
    seen.add(digest)
    return None


def document_passages(doc: SourceDocument, settings: DocumentSettings, tally: ShardTally) -> list[dict]:
    """A document's passage rows: split (up to `max_source_chars`), passages below `min_passage_chars`
    dropped, then the seeded `passages_per_document` sample. Only the kept passages are sliced out."""
    limit = source_limit(doc.text, settings.max_source_chars, settings.passage_chars)
    tally.cut_documents += limit is not None
    passages = split_passages(doc.text, settings.passage_chars, settings.min_passage_chars, limit)
    tally.passages_split += len(passages)
    tally.split_chars += sum(p.length for p in passages)
    # A passage stays short only when its whole document is (the splitter merges the rest): today's
    # `too_short` rule for documents.
    usable = [p for p in passages if p.length >= settings.min_passage_chars]
    tally.passages_dropped["short"] += len(passages) - len(usable)
    if not usable:
        tally.dropped["too_short"] += 1
        return []
    by_index = {p.index: p for p in usable}
    chosen = sample_passages(list(by_index), settings.passages_per_document, settings.seed, doc.source_doc_id)
    tally.passages_dropped["not_sampled"] += len(usable) - len(chosen)
    rows = []
    for index in chosen:
        p = by_index[index]
        tally.kept_chars += p.length
        tally.passages_kept += 1
        rows.append(
            {
                "doc_id": passage_doc_id(doc.source_doc_id, p.index, len(passages)),
                "source_doc_id": doc.source_doc_id,
                "passage": p.index,
                "offset": p.start,
                "title": doc.title,
                "text": doc.text[p.start : p.end],
                "source_chars": len(doc.text),
            }
        )
    return rows


def chatterbot_qa_pairs() -> list[tuple[str, str]]:
    """(question, answer) turns from chatterbot-corpus: a small real Q&A evaluation set."""
    import yaml

    root = ir.files("chatterbot_corpus") / "data/english"
    pairs = []
    for f in sorted(root.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yml"):
            for conv in yaml.safe_load(f.read_text(encoding="utf8")).get("conversations") or []:
                if len(conv) >= 2 and str(conv[0]).strip().endswith("?"):
                    pairs.append((str(conv[0]).strip(), str(conv[1]).strip()))
    return pairs
