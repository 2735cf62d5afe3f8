"""How much of a long-document corpus reaches the pipeline: the old lead rule vs passages.

Corpora (shipped in gensim==4.4.0): the 106 Wikipedia articles of its test data, and `lee_background.cor`
(300 Australian news articles, latin-1, one per line). For each:

1. the old rule, `lead_document(text, 1200)`: one lead of whole paragraphs per document;
2. passages, all of them: `read_document_shard` with `passages_per_document=0`;
3. passages, the demo's seeded sample: `read_document_shard` with the default settings
   (`passages_per_document=2`).

Rows 2 and 3 run the pipeline's own reader on a shard file written from the corpus, so the drops
(`min_passage_chars`) and ids are the ones the `documents` asset makes. Printed per rule: source documents,
documents that give at least one row, rows (passages), share of the source characters in those rows, and
passage length percentiles; with `--tokens`, also the share of rows within the encoder's window
(all-MiniLM-L6-v2, 256 tokens).

    .venv/bin/python bench/passage_coverage.py [--passage-chars 1200] [--tokens]
"""

from __future__ import annotations

import argparse
import importlib.resources as ir
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Measure this checkout's code, not whichever checkout the virtualenv's editable install points at.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fi_resources.settings import DocumentSettings  # noqa: E402
from fi_resources.sources import lead_document, read_document_shard, wikipedia_articles  # noqa: E402

LEE = "test/test_data/lee_background.cor"


def lee_articles() -> list[tuple[str, str]]:
    path = ir.files("gensim") / LEE
    lines = path.read_text(encoding="latin-1").splitlines()
    return [(f"lee #{i}", line.strip()) for i, line in enumerate(lines) if line.strip()]


def lead_rule(articles: Sequence[tuple[str, str]], max_chars: int) -> tuple[int, list[str]]:
    leads = [lead_document(text, max_chars) for _, text in articles]
    return sum(bool(lead) for lead in leads), [lead for lead in leads if lead]


def passage_rule(
    articles: Sequence[tuple[str, str]], settings: DocumentSettings, folder: Path
) -> tuple[int, list[str]]:
    path = folder / "corpus.jsonl"
    with open(path, "w", encoding="utf8") as f:
        for title, text in articles:
            f.write(json.dumps({"title": title, "text": text}) + "\n")
    df, _ = read_document_shard(path, settings)
    return int(df["source_doc_id"].nunique()), df["text"].tolist()


def percentiles(lengths: Sequence[int]) -> str:
    if len(lengths) < 2:
        return " / ".join([str(lengths[0]) if lengths else "-"] * 3)
    deciles = statistics.quantiles(lengths, n=10, method="inclusive")
    return f"{deciles[0]:.0f} / {statistics.median(lengths):.0f} / {deciles[-1]:.0f} / {max(lengths)}"


def within_window(texts: Sequence[str], tokenizer, window: int) -> float:
    counts = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    return sum(n <= window for n in counts) / len(counts) if counts else 0.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passage-chars", type=int, default=DocumentSettings().passage_chars)
    parser.add_argument("--tokens", action="store_true", help="also count rows within MiniLM's 256 tokens")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokens:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # counting long texts is the point: no "longer than 512" warning

        from fi_resources.encoder import minilm_dir

        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    sample = DocumentSettings(passage_chars=args.passage_chars)
    rules = {
        f"lead_document ({args.passage_chars} chars)": lambda a, d: lead_rule(a, args.passage_chars),
        "passages, all": lambda a, d: passage_rule(
            a, sample.model_copy(update={"passages_per_document": 0}), d
        ),
        f"passages, sample of {sample.passages_per_document}": lambda a, d: passage_rule(a, sample, d),
    }
    header = "| corpus | rule | source docs | docs used | rows | text share | chars p10 / p50 / p90 / max |"
    if tokenizer is not None:
        header += " rows ≤ 256 tokens |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for corpus, articles in (("gensim Wikipedia", wikipedia_articles()), ("gensim Lee news", lee_articles())):
        source_chars = sum(len(text) for _, text in articles)
        with tempfile.TemporaryDirectory() as tmp:
            for rule, run in rules.items():
                used, texts = run(articles, Path(tmp))
                lengths = [len(t) for t in texts]
                line = (
                    f"| {corpus} | {rule} | {len(articles)} | {used} | {len(texts)} | "
                    f"{sum(lengths) / source_chars:.1%} | {percentiles(lengths)} |"
                )
                if tokenizer is not None:
                    line += f" {within_window(texts, tokenizer, 256):.1%} |"
                print(line)


if __name__ == "__main__":
    main()
