"""Input text: real user questions, Wikipedia articles shipped in packages, and the user's own files."""

from __future__ import annotations

import bz2
import hashlib
import importlib.resources as ir
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fi_resources.logic.passages import passage_doc_id, sample_passages, source_limit, split_passages
from fi_resources.settings import DocumentSettings

GENSIM_WIKI = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
INPUT_SUFFIXES = (".jsonl", ".parquet", ".csv")


class InputFileError(ValueError):
    """A user file that cannot be read; the message names the file and what is wrong."""


def stable_id(*parts: str, n: int = 12) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:n]


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


def read_table_file(path: Path, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a JSONL/Parquet/CSV file; the first of `text_columns` present becomes column 'text'."""
    try:
        if path.suffix == ".jsonl":
            rows = []
            with open(path, encoding="utf8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise InputFileError(f"{path}: line {n} is not valid JSON ({exc.msg})") from exc
            df = pd.DataFrame(rows)
        elif path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".csv":
            df = pd.read_csv(path)
        else:
            raise InputFileError(f"{path}: unsupported file type (use {', '.join(INPUT_SUFFIXES)})")
    except InputFileError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types for a corrupt file
        raise InputFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    col = next((c for c in text_columns if c in df.columns), None)
    if col is None:
        raise InputFileError(
            f"{path}: needs one of the columns {list(text_columns)}; found {list(df.columns)}"
        )
    df = df.rename(columns={col: "text"})
    df["text"] = df["text"].astype("string").fillna("")
    return df


def read_user_query_files(folder: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(folder.glob("*")) if folder.exists() else []:
        if path.suffix in INPUT_SUFFIXES:
            df = read_table_file(path, ("query", "question", "text", "prompt"))
            frames.append(pd.DataFrame({"query": df["text"].str.strip(), "source": f"user/{path.name}"}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["query", "source"])


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


@dataclass(frozen=True)
class SourceDocument:
    """One row of a shard file: its stable id (file name, row number, start of its text) and its text."""

    source_doc_id: str
    row: int
    title: str
    text: str


@dataclass
class ShardTally:
    """What became of a shard's text: documents and passages by outcome, and their characters."""

    source_documents: int = 0
    source_chars: int = 0
    passages_split: int = 0
    split_chars: int = 0
    kept_chars: int = 0
    cut_documents: int = 0  # longer than max_source_chars: split up to a boundary before that length
    # Source documents dropped whole, and passages of the kept ones that are not rows.
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "too_short": 0, "duplicate": 0})
    passages_dropped: dict[str, int] = field(default_factory=lambda: {"short": 0, "not_sampled": 0})


def source_documents(path: Path) -> Iterator[SourceDocument]:
    """The rows of a shard file with their stable ids, in file order. Raises `InputFileError`."""
    df = read_table_file(path, ("text", "content", "document", "body"))
    titles = df["title"].astype("string").fillna("") if "title" in df.columns else [""] * len(df)
    for i, (title, text) in enumerate(zip(titles, df["text"], strict=True)):
        yield SourceDocument(stable_id(path.name, str(i), text[:200]), i, title or f"{path.stem} #{i}", text)


def read_document_shard(path: Path, settings: DocumentSettings) -> tuple[pd.DataFrame, ShardTally]:
    """One shard file → one row per kept passage (`DOCUMENT_COLUMNS`) and what became of the rest."""
    tally, rows, seen = ShardTally(), [], set()
    for doc in source_documents(path):
        tally.source_documents += 1
        tally.source_chars += len(doc.text)
        if not doc.text or doc.text.isspace():  # not .strip(): that copies a text of any size
            tally.dropped["empty"] += 1
        elif doc.source_doc_id in seen:
            tally.dropped["duplicate"] += 1
        else:
            seen.add(doc.source_doc_id)
            rows += document_passages(doc, settings, tally)
    return pd.DataFrame(rows, columns=DOCUMENT_COLUMNS), tally


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
