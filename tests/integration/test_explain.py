"""`python -m fi_assets.explain` against a small real warehouse: every table written by the project's own
stage functions (documents from a real shard file, templates through the `<fi>` grammar, pairs through
`read_pair`'s excerpt expansion, the judge stage, the token-for-token corpus) with scripted generators in
place of the models, stored through `Warehouse.write_table` and recorded in the catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from fi_resources.backends import BackendStats
from fi_resources.logic.prompts import PROMPT_VERSION
from fi_resources.settings import (
    CorpusSettings,
    DocumentSettings,
    InstantiationSettings,
    JudgeSettings,
    TemplateBankSettings,
)
from fi_resources.stages.corpus import training_corpus
from fi_resources.stages.documents import describe_documents, shard_documents
from fi_resources.stages.generation import instantiate_pairs, judge_pairs
from fi_resources.stages.retrieval import MATCH_COLUMNS
from fi_resources.stages.templates import collect_user_queries, template_bank, valid_templates
from fi_resources.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]
SHARD = "wiki-0"

ASCII = (
    "ASCII, abbreviated from American Standard Code for Information Interchange, is a character encoding "
    "standard for electronic communication. ASCII codes represent text in computers, telecommunications "
    "equipment, and other devices. Most modern character-encoding schemes are based on ASCII.\n\n"
    "ASCII was developed from telegraph code. Its first commercial use was as a seven-bit teleprinter code "
    "promoted by Bell data services. Work on the ASCII standard began in May 1961, and the first edition "
    "of the standard was published in 1963."
)
ALGIERS = (
    "Algiers is the capital and largest city of Algeria. The city is located on the Mediterranean coast "
    "in the north-central part of the country. Its population was estimated at about three million in "
    "2008, and the city is known for its whitewashed buildings rising up from the sea."
)
TEMPLATE = {
    "template": "What is <fi>a character encoding</fi>?",
    "compatible_document_description": "A text that defines a character encoding standard.",
}
CAPITAL = {
    "template": "What is the capital of <fi>a country</fi>?",
    "compatible_document_description": "A text about a country's capital city.",
}
# The genericizer's output per query; two queries become the same template text.
GENERICIZED = {
    "What is ASCII?": TEMPLATE,
    "what is unicode?": TEMPLATE,
    "What is the capital of Algeria?": CAPITAL,
}
INSTANTIATED = {  # (template text, a word of the passage) → the instantiator's output
    (TEMPLATE["template"], "abbreviated"): "Instruction: What is ASCII?\nAnswer: <excerpt>ASCII, abbreviated"
    "<...>electronic communication.</excerpt>",
    (TEMPLATE["template"], "telegraph"): "Instruction: When did work on ASCII begin?\nAnswer: Thus "
    "<excerpt>Work on the ASCII standard<...>in May 1961</excerpt>.",
    (CAPITAL["template"], "Algiers"): "null",
}


class Scripted:
    """A text generator answering each prompt from a table keyed by text the prompt contains."""

    def __init__(self, answers: dict[tuple[str, ...], str]):
        self.answers, self.stats, self.model_id = answers, BackendStats(), "scripted"

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 48, stop=None, progress=None, **_
    ) -> list[str]:
        self.stats.prompts += len(prompts)
        return [next(v for k, v in self.answers.items() if all(part in p for part in k)) for p in prompts]


class Describer:
    name = "rules/describe-test"

    def describe_documents(self, titles, texts, progress=None) -> list[str]:
        return [f"An encyclopedia article about {t}." for t in titles]


class Judge:
    name = "likelihood-judge/test"

    def score(self, instructions, answers, progress=None, templates=None) -> list[dict]:
        return [
            {"total_gain": 0.42, "relevance": 0.61, "fluency": -1.3, "judge_score": 5, "judge_value": 0.87,
             "judge_reason": "answer adds 0.42 nats/token to the instruction", "judge_feedback": None,
             "judge_error": None}
            for _ in instructions
        ]  # fmt: skip


def write(wh: Warehouse, table: str, df: pd.DataFrame, partition: str | None = None) -> None:
    path, version = wh.write_table(table, partition, df)
    wh.record_materialization(table, partition, f"run-{table}", version, len(df), path, code_version="7")


def artifact(wh: Warehouse, table: str, **info: str) -> None:
    # What the IO manager stores for a model-like asset: its pointer row with the stage's facts.
    write(
        wh,
        table,
        pd.DataFrame([{"artifact_path": f"/models/{table}", "data_version": f"{table[:4]}01", **info}]),
    )


def build_warehouse(home: Path, tables: set[str] | None = None) -> None:
    """The warehouse of one tiny run; `tables`: only these are written (a partial materialization)."""
    wh = Warehouse(home)
    keep = (lambda t: True) if tables is None else tables.__contains__  # noqa: E731
    queries = collect_user_queries([pd.DataFrame({"query": list(GENERICIZED), "source": "chatterbot"})]).value
    student = Scripted({(f"Query: {q}\n",): json.dumps(t) for q, t in GENERICIZED.items()})
    bank = template_bank(queries, student, "genericizer@gene01", TemplateBankSettings()).value
    shard_file = home / "shard.jsonl"
    shard_file.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in
                                  (("ASCII", ASCII), ("Algiers", ALGIERS))))  # fmt: skip
    settings = DocumentSettings(passage_chars=300, passages_per_document=0)
    documents = shard_documents(shard_file, SHARD, settings).value
    descriptions = describe_documents(documents, Describer()).value
    templates = valid_templates(bank).set_index("template")
    matches = pd.DataFrame(
        [
            {"match_id": f"{d}:{templates.at[t, 'template_id']}", "doc_id": d, "shard": SHARD,
             "template_id": templates.at[t, "template_id"], "query_id": templates.at[t, "query_id"],
             "template": t, "n_slots": 1, "cosine": 0.61, "embedding": "local_2"}
            for d, title in zip(documents["doc_id"], documents["title"], strict=True)
            for t in (TEMPLATE["template"] if title == "ASCII" else CAPITAL["template"],)
        ],
        columns=MATCH_COLUMNS,
    )  # fmt: skip
    pairs = instantiate_pairs(
        matches, documents, Scripted(INSTANTIATED), "instantiator@inst01", lambda s: len(s.split()),
        InstantiationSettings(),
    ).value  # fmt: skip
    judged = judge_pairs(pairs, Judge(), JudgeSettings(max_template_share=1.0)).value
    corpus = training_corpus(judged, documents, lambda s: len(s.split()), CorpusSettings()).value
    for table, df in (("user_queries", queries), ("query_templates", bank), ("training_corpus", corpus)):
        if keep(table):
            write(wh, table, df)
    shard_tables = (("documents", documents), ("document_descriptions", descriptions),
                    ("document_matches", matches), ("instantiated_pairs", pairs), ("judged_pairs", judged))  # fmt: skip
    for table, df in shard_tables:
        if keep(table):
            write(wh, table, df, SHARD)
    models = {
        "genericizer": {"base_model": "SmolLM2-135M-Instruct", "prompt_version": PROMPT_VERSION},
        "instantiator": {"base_model": "SmolLM2-135M-Instruct", "prompt_version": PROMPT_VERSION},
        "local_embedder": {"base_model": "all-MiniLM-L6-v2", "round1_version": "retr01"},
        "template_index": {"embedder_version": "loca01"},
    }
    for table, info in models.items():
        if keep(table):
            artifact(wh, table, **info)


def explain(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("FI_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "fi_assets.explain", "--home", str(home), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "fi"
    build_warehouse(path)
    return path


def pair_rows(home: Path) -> pd.DataFrame:
    return Warehouse(home).read_table("instantiated_pairs").set_index("pair_id")


def test_story_of_a_kept_pair_walks_from_query_to_judge(home):
    pairs = pair_rows(home)
    pair_id = pairs.index[pairs["instruction"] == "When did work on ASCII begin?"][0]
    out = explain(home, pair_id)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Traceback" not in out.stderr
    # Both queries that became this template, with their ids and source; the template with its slot.
    queries = Warehouse(home).read_table("user_queries").set_index("query")
    for q in ("What is ASCII?", "what is unicode?"):
        assert f"[{queries.at[q, 'query_id']}] {q}  (chatterbot)" in text
    assert "What is <fi>a character encoding</fi>?" in text and "<fi> slot 1: a character encoding" in text
    assert "compatible document: A text that defines a character encoding standard." in text
    # The second passage of the ASCII article: its offset in the source text is not 0.
    offset = ASCII.index("ASCII was developed")
    assert "passage 1 of source" in text and f"offset {offset}, length {len(ASCII) - offset}" in text
    assert "| ASCII was developed from telegraph code." in text
    assert "Answer: Thus Work on the ASCII standard began in May 1961." in text
    start = ASCII.index("Work on the ASCII")
    end = ASCII.index("in May 1961") + len("in May 1961")
    assert f"1. [{start}, {end}) = passage [{start - offset}, {end - offset})  ok" in text
    assert "document text: 'Work on the ASCII standard began in May 1961'" in text
    assert "likelihood-judge/test: score 5 (value 0.870), kept" in text
    assert "relevance=0.610" in text and "total_gain=0.420" in text
    assert "in training_corpus at position" in text
    for model in ("instantiator: instantiator@inst01 (base SmolLM2-135M-Instruct)",
                  f"instantiator prompt: {PROMPT_VERSION}", "genericizer: genericizer@gene01",
                  "encoder: all-MiniLM-L6-v2 (version loca01)", "judge: likelihood-judge/test",
                  "describer: rules/describe-test"):  # fmt: skip
        assert model in text
    assert f"judged_pairs[{SHARD}]: run run-judged_pairs, code 7" in text
    assert "MISMATCH" not in text and "Not known" not in text


def test_json_story_and_unique_prefix(home):
    pairs = pair_rows(home)
    pair_id = pairs.index[pairs["instruction"] == "What is ASCII?"][0]
    out = explain(home, pair_id[:-3], "--json")
    assert out.returncode == 0, out.stderr
    story = json.loads(out.stdout)
    assert story["pair_id"] == pair_id and story["excerpt_mismatches"] == 0
    (excerpt,) = story["excerpts"]
    assert ASCII[excerpt["start"] : excerpt["end"]] == excerpt["text"]
    assert excerpt["text"].endswith("electronic communication.") and excerpt["problems"] == []
    assert story["document"]["offset"] == 0 and story["judge"]["kept"] is True


def test_a_failed_instantiation_says_it_was_not_judged(home):
    pairs = pair_rows(home)
    pair_id = pairs.index[pairs["status"] == "refused_null"][0]
    out = explain(home, pair_id)
    assert out.returncode == 0, out.stderr
    assert "status refused_null" in out.stdout
    assert "not judged: the instantiation failed (refused_null)" in out.stdout
    assert "What is the capital of <fi>a country</fi>?" in out.stdout and "Not known" not in out.stdout


def test_a_span_that_does_not_match_the_document_is_flagged(home, tmp_path):
    copy = tmp_path / "fi"
    shutil.copytree(home, copy)
    wh = Warehouse(copy)
    judged = wh.read_table("judged_pairs")
    row = judged.index[judged["instruction"] == "What is ASCII?"][0]
    start, end = json.loads(judged.at[row, "excerpt_spans"])[0]
    judged.at[row, "excerpt_spans"] = json.dumps([[start + 7, end + 7]])  # a span moved by 7 characters
    wh.write_table("judged_pairs", SHARD, judged)
    out = explain(copy, judged.at[row, "pair_id"])
    assert out.returncode == 3
    assert "NOT match the document text" in out.stdout
    assert (
        "MISMATCH" in out.stdout
        and "the document text at these coordinates is not in the answer" in out.stdout
    )
    assert f"passage_spans records [{start}, {end}) in the passage" in out.stdout


def test_unknown_and_ambiguous_ids_exit_2_and_say_how_to_find_ids(home):
    out = explain(home, "no-such-pair")
    assert out.returncode == 2 and out.stdout == ""
    assert "no pair has the id 'no-such-pair' among 3 pairs" in out.stderr and "--list" in out.stderr
    assert "Traceback" not in out.stderr
    ambiguous = explain(home, pair_rows(home).index[0][:3])  # every ASCII pair shares its document prefix
    assert ambiguous.returncode == 2 and "give more of it" in ambiguous.stderr
    missing = explain(home.parent / "nowhere", "x")
    assert missing.returncode == 2 and "no warehouse at" in missing.stderr
    assert not (home.parent / "nowhere").exists()  # the reader never creates a data home


def test_list_and_random_pick_judged_ids(home):
    listed = explain(home, "--list", "5")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all("\t5\tkept\t" in line for line in lines)
    picked = explain(home, "--random", "--seed", "1", "--json")
    assert picked.returncode == 0 and json.loads(picked.stdout)["pair_id"] in {
        ln.split("\t")[0] for ln in lines
    }


def test_a_partial_warehouse_prints_what_is_known_and_names_what_is_missing(tmp_path):
    home = tmp_path / "fi"
    build_warehouse(home, tables={"user_queries", "query_templates", "instantiated_pairs"})
    pair_id = pair_rows(home).index[0]
    out = explain(home, pair_id)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert (
        "What is <fi>a character encoding</fi>?" in out.stdout and "Instruction: What is ASCII?" in out.stdout
    )
    assert "1. [" in out.stdout and "unchecked" in out.stdout  # spans known, the passage text is not
    for table in ("documents", "judged_pairs", "document_matches", "training_corpus"):
        assert f"  - {table}: not materialized" in out.stdout


def test_reading_while_the_pipeline_writes_fails_neither_side(home, tmp_path):
    home = Path(shutil.copytree(home, tmp_path / "fi"))
    # The catalog is read through a read-only connection under the writers' file lock, so a writer that
    # records materializations meanwhile never meets DuckDB's lock, and the reader never sees a torn file.
    pair_id = pair_rows(home).index[0]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = f"import sys\nfrom fi_assets.explain import main\nsys.exit(max(main(['--home', {str(home)!r}, {pair_id!r}, '--json']) for _ in range(15)))"
    reader = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    wh, written = Warehouse(home), 0
    while reader.poll() is None:
        path, version = wh.write_table("writer_probe", f"p{written}", pd.DataFrame({"x": [written]}))
        wh.record_materialization("writer_probe", f"p{written}", "run-w", version, 1, path)
        written += 1
    assert reader.wait() == 0 and written > 0
    assert (
        wh.query("SELECT count(*) FROM catalog.materializations WHERE asset_key = 'writer_probe'").iloc[0, 0]
        == written
    )
