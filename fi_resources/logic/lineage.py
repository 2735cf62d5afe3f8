"""The story of one pair, from the rows the warehouse holds about it: query → template → passage → excerpts
(checked against the document text) → judge → corpus, with the models, prompt versions and
materializations. Pure: rows in (plain dicts per table, None for a table that is not materialized), a
`Story` out, rendered as text or JSON. The joins are the README's lineage join: `template_id`, `doc_id`,
`query_id`, and `excerpt_spans - offset` into the passage text.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from fi_resources.logic.templates import TemplateError, parse_template

Rows = list[dict]
# Table name → its rows about this pair; None when the table has no materialized partition at all.
Found = Mapping[str, Rows | None]

# Judged-pair columns that are not judge signals (the pair itself and the keep decision).
JUDGE_FIELDS = ("judge", "judge_score", "judge_value", "judge_reason", "judge_feedback", "judge_error",
                "kept", "diversity_dropped")  # fmt: skip


NO_PAIRS = "the warehouse has no pairs yet (instantiated_pairs and judged_pairs are empty or missing)"


class UnknownPair(LookupError):
    """No pair (or more than one) has this id or id prefix; the message says how to find ids."""


@dataclass(frozen=True)
class Excerpt:
    """One copied span: `[start, end)` in the source document, where it falls in the passage, the document
    text at those coordinates, and every way it disagrees with the pair (empty `problems` = it checks)."""

    start: int
    end: int
    passage_start: int | None
    passage_end: int | None
    text: str | None
    problems: tuple[str, ...] = ()


@dataclass
class Story:
    pair_id: str
    pair: dict
    queries: list[dict] = field(default_factory=list)
    template: dict | None = None
    match: dict | None = None
    document: dict | None = None
    excerpts: list[Excerpt] = field(default_factory=list)
    judge: dict | None = None
    corpus: dict | None = None
    models: dict[str, str] = field(default_factory=dict)
    materializations: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(bool(e.problems) for e in self.excerpts)


def resolve_pair_id(wanted: str, known: Sequence[str]) -> str:
    """`wanted` itself, or the one known id it is a prefix of; `UnknownPair` otherwise."""
    if wanted in known:
        return wanted
    hits = sorted({k for k in known if k.startswith(wanted)})
    if len(hits) == 1:
        return hits[0]
    how = "list some with `python -m fi_assets.explain --list 20` (or `--random`)"
    if hits:
        shown = ", ".join(hits[:5]) + (" …" if len(hits) > 5 else "")
        raise UnknownPair(f"{wanted!r} is the prefix of {len(hits)} pair ids ({shown}); give more of it")
    if not known:
        raise UnknownPair(NO_PAIRS)
    raise UnknownPair(f"no pair has the id {wanted!r} among {len(known)} pairs; {how}")


def check_excerpts(
    spans: Sequence[Sequence[int]],
    passage_spans: Sequence[Sequence[int]] | None,
    passage: str | None,
    offset: int | None,
    answer: str | None,
) -> list[Excerpt]:
    """Each source-document span, located in the passage (`passage[start - offset:end - offset]`, the
    passage being `source[offset:offset + len]`) and checked: inside the passage, equal to the recorded
    passage-local span, and its text really in the answer."""
    # The two lists are recorded together: different lengths mean one of them is wrong for every span.
    counted = (
        [f"{len(spans)} excerpt_spans but {len(passage_spans)} passage_spans recorded"]
        if passage_spans is not None and len(passage_spans) != len(spans)
        else []
    )
    out = []
    for i, (start, end) in enumerate(spans):
        problems = list(counted)
        recorded = tuple(passage_spans[i]) if passage_spans is not None and i < len(passage_spans) else None
        local, text = recorded, None
        if passage is not None and offset is not None:
            local = (start - offset, end - offset)
            if not 0 <= local[0] <= local[1] <= len(passage):
                problems.append(
                    f"outside the passage, which is [{offset}, {offset + len(passage)}) of the source"
                )
            else:
                text = passage[local[0] : local[1]]
                if answer is not None and text not in answer:
                    problems.append("the document text at these coordinates is not in the answer")
            if recorded is not None and recorded != local:
                problems.append(f"passage_spans records [{recorded[0]}, {recorded[1]}) in the passage")
        out.append(Excerpt(start, end, *(local or (None, None)), text, tuple(problems)))
    return out


def build_story(pair_id: str, found: Found, catalog: Rows | None, pair_columns: Sequence[str] = ()) -> Story:
    """The story from what was found; each table or row that is not there is named in `missing`.
    `pair_columns`: the columns of an instantiated pair, so the rest of a judged row reads as the judge's."""
    missing: list[str] = []

    def one(table: str, what: str, **match: object) -> dict | None:
        rows = found.get(table)
        if rows is None:
            missing.append(f"{table}: not materialized (no table), so {what} is unknown")
            return None
        hits = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
        if not hits:
            keys = ", ".join(f"{k}={v!r}" for k, v in match.items())
            missing.append(f"{table}: no row with {keys}, so {what} is unknown")
        return hits[-1] if hits else None

    instantiated = one("instantiated_pairs", "the raw output", pair_id=pair_id)
    failed = instantiated is not None and instantiated.get("status") != "ok"
    # A failed instantiation is never judged: no judged row is expected for it.
    judged = None if failed else one("judged_pairs", "the judge's verdict", pair_id=pair_id)
    pair = {**(instantiated or {}), **(judged or {})}
    story = Story(pair_id, _pick(pair, PAIR_FIELDS))
    story.template = _template(one("query_templates", "the template", template_id=pair.get("template_id")))
    story.queries = _queries(pair, story.template, found)
    story.match = _pick(one("document_matches", "the match", match_id=pair_id), MATCH_FIELDS) or None
    story.document = _document(one("documents", "the passage text", doc_id=pair.get("doc_id")), found)
    if failed:
        story.judge = {"note": f"not judged: the instantiation failed ({instantiated.get('status')})"}
    elif judged is not None:
        story.judge = _judge(judged, {*pair_columns, *(instantiated or {})})
    corpus = found.get("training_corpus")
    if corpus is None:
        missing.append("training_corpus: not materialized (no table)")
    else:
        story.corpus = _pick(corpus[-1], ("position", "tokens")) if corpus else {"in_corpus": False}
    document = story.document or {}
    story.excerpts = check_excerpts(
        _json_list(pair.get("excerpt_spans")) or [],
        _json_list(pair.get("passage_spans")),
        document.get("text"),
        document.get("offset"),
        pair.get("answer"),
    )
    story.models = _models(pair, story.template, document, found)
    story.materializations = _materializations(catalog, found, pair.get("shard"))
    if catalog is None:
        missing.append("catalog.materializations: not readable (no warehouse.duckdb, or it stayed busy)")
    story.missing = missing
    return story


PAIR_FIELDS = ("shard", "status", "doc_id", "source_doc_id", "template_id", "query_id", "instruction",
               "answer", "answer_markup", "grounding_ratio", "decoded_tokens", "raw_output")  # fmt: skip
MATCH_FIELDS = ("cosine", "embedding", "n_slots")
DOCUMENT_FIELDS = ("doc_id", "source_doc_id", "title", "passage", "offset", "text", "source_chars")


def _pick(row: Mapping | None, keys: Sequence[str]) -> dict:
    return {k: row[k] for k in keys if row and k in row}


def _json_list(value: object) -> list | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else list(value)  # type: ignore[call-overload]


def _template(row: dict | None) -> dict | None:
    if row is None:
        return None
    out = _pick(row, ("template_id", "template", "compatible_document_description", "n_slots", "model",
                      "prompt_version", "query_id", "query"))  # fmt: skip
    try:
        out["slots"] = list(parse_template(row["template"]).slots)
    except (TemplateError, TypeError):
        out["slots"] = []
    return out


def _queries(pair: dict, template: dict | None, found: Found) -> list[dict]:
    """The query the bank row came from, then every other query the genericizer turned into the same
    template text (the bank keeps one row per distinct template)."""
    ids = [i for i in (pair.get("query_id"), (template or {}).get("query_id")) if i]
    text = (template or {}).get("template")
    same = [r for r in found.get("query_templates") or [] if text is not None and r.get("template") == text]
    ids += [r["query_id"] for r in same]
    by_id = {r["query_id"]: r for r in found.get("user_queries") or []}
    texts = {r["query_id"]: r.get("query") for r in same}
    silver = {r["query_id"]: r for r in found.get("silver_templates") or []}
    out = []
    for qid in dict.fromkeys(ids):
        row = {"query_id": qid, "query": by_id.get(qid, {}).get("query") or texts.get(qid)}
        row["source"] = by_id.get(qid, {}).get("source")
        if qid in silver:
            row["teacher_template"] = silver[qid].get("template")
        out.append(row)
    return out


def _document(row: dict | None, found: Found) -> dict | None:
    if row is None:
        return None
    out = _pick(row, DOCUMENT_FIELDS)
    out["length"] = len(row.get("text") or "")
    described = [r for r in found.get("document_descriptions") or [] if r.get("doc_id") == row.get("doc_id")]
    if described:
        out["description"] = described[-1].get("description")
        out["describer"] = described[-1].get("teacher")
    return out


def _judge(row: dict, pair_columns: set[str]) -> dict:
    out = _pick(row, JUDGE_FIELDS)
    out["signals"] = {
        k: v for k, v in row.items() if k not in JUDGE_FIELDS and k not in pair_columns and v is not None
    }
    return out


def _last(found: Found, table: str, key: str) -> object:
    rows = found.get(table) or []
    return rows[-1].get(key) if rows else None


def _models(pair: dict, template: dict | None, document: dict, found: Found) -> dict[str, str]:
    """Which model did each step, and with which prompt version; an entry is left out when unknown."""
    template = template or {}
    teachers = {r.get("table"): r.get("teacher") for r in found.get("teachers") or []}
    candidates = {
        "instantiator": _with(pair.get("model"), base=_last(found, "instantiator", "base_model")),
        "instantiator prompt": pair.get("prompt_version"),
        "genericizer": _with(template.get("model"), base=_last(found, "genericizer", "base_model")),
        "genericizer prompt": template.get("prompt_version"),
        "teacher (templates)": teachers.get("silver_templates"),
        "teacher (instantiations)": teachers.get("silver_instantiations"),
        "describer": document.get("describer"),
        "encoder": _with(
            _last(found, "local_embedder", "base_model"),
            version=_last(found, "local_embedder", "data_version"),
        ),
        "index": _last(found, "template_index", "data_version"),
        "judge": pair.get("judge"),
    }
    return {k: str(v) for k, v in candidates.items() if v not in (None, "")}


def _with(name: object, **extra: object) -> str | None:
    if name in (None, ""):
        return None
    notes = ", ".join(f"{k} {v}" for k, v in extra.items() if v not in (None, ""))
    return f"{name} ({notes})" if notes else str(name)


# The tables a story reads, in the order of the pipeline; partitioned ones are looked up at the pair's shard.
STORY_TABLES = ("user_queries", "silver_templates", "genericizer", "query_templates", "documents",
                "document_descriptions", "local_embedder", "template_index", "document_matches",
                "silver_instantiations", "round1_instantiator", "round2_instantiations", "instantiator",
                "instantiated_pairs", "judged_pairs",
                "training_corpus")  # fmt: skip
SHARD_TABLES = frozenset({"documents", "document_descriptions", "document_matches", "instantiated_pairs",
                          "judged_pairs"})  # fmt: skip


def _materializations(catalog: Rows | None, found: Found, shard: object) -> list[dict]:
    """The latest catalog row of each table the story read (at the pair's shard for partitioned ones)."""
    latest: dict[str, dict] = {}
    for row in sorted(catalog or [], key=lambda r: str(r.get("materialized_at"))):
        table = row.get("asset_key")
        if table not in found:
            continue
        if table in SHARD_TABLES and row.get("partition_key") != shard:
            continue
        latest[table] = row
    keys = ("asset_key", "partition_key", "run_id", "code_version", "data_version", "row_count",
            "materialized_at")  # fmt: skip
    return [_pick(latest[t], keys) for t in STORY_TABLES if t in latest]


# ---- rendering -------------------------------------------------------------------------------------------
WIDTH = 100


def story_json(story: Story) -> str:
    data = asdict(story)
    data["excerpt_mismatches"] = story.mismatches
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def render_text(story: Story) -> str:
    """The story for a reader, top to bottom in pipeline order."""
    p = story.pair
    out = [f"Pair {story.pair_id}  (shard {p.get('shard', '?')}, status {p.get('status', '?')})"]
    if story.mismatches:
        out.append(_banner(story))
    out += _section("1. User quer" + ("ies" if len(story.queries) > 1 else "y"))
    for q in story.queries:
        source = f"  ({q['source']})" if q.get("source") else ""
        out.append(f"  [{q['query_id']}] {q.get('query') or '(text unknown)'}{source}")
        if q.get("teacher_template"):
            out.append(f"      the teacher's template for it: {q['teacher_template']}")
    t = story.template
    out += _section("2. Template")
    if t:
        out.append(f"  [{t.get('template_id')}] {t.get('template')}")
        for i, slot in enumerate(t.get("slots") or [], 1):
            out.append(f"      <fi> slot {i}: {slot}")
        out += _wrapped("compatible document: ", t.get("compatible_document_description"))
    else:
        out.append(f"  (unknown) template_id {p.get('template_id')}")
    if story.match:
        m = story.match
        out.append(f"  matched by the {m.get('embedding')} embedding, cosine {_num(m.get('cosine'))}")
    d = story.document
    out += _section("3. Document passage")
    if d:
        out.append(f"  [{d.get('doc_id')}] {d.get('title')!r}, passage {d.get('passage')} of source "
                   f"{d.get('source_doc_id')}: offset {d.get('offset')}, length {d.get('length')} "
                   f"(source {d.get('source_chars')} chars)")  # fmt: skip
        out += _wrapped("described as: ", d.get("description"))
        out += _wrapped("| ", d.get("text"), keep_lines=True)
    else:
        out.append(f"  (unknown) doc_id {p.get('doc_id')}")
    out += _section("4. Pair")
    out += _wrapped("Instruction: ", p.get("instruction"))
    out += _wrapped("Answer: ", p.get("answer"))
    out += _wrapped("Answer as generated: ", p.get("answer_markup"))
    if p.get("grounding_ratio") is not None:
        out.append(
            f"  grounding ratio {_num(p['grounding_ratio'])}, {p.get('decoded_tokens')} decoded tokens"
        )
    out += _section("5. Excerpt spans (source-document coordinates [start, end))")
    if not story.excerpts:
        out.append("  (none recorded)")
    for i, e in enumerate(story.excerpts, 1):
        where = (
            f"passage [{e.passage_start}, {e.passage_end})" if e.passage_start is not None else "passage ?"
        )
        mark = "MISMATCH" if e.problems else ("ok" if e.text is not None else "unchecked")
        out.append(f"  {i}. [{e.start}, {e.end}) = {where}  {mark}")
        if e.text is not None:
            out += _wrapped("document text: ", repr(e.text), indent=6)
        out += [f"      !! {problem}" for problem in e.problems]
    out += _section("6. Judge")
    j = story.judge
    if j and "note" in j:
        out.append(f"  {j['note']}")
    elif j:
        kept = (
            "kept"
            if j.get("kept")
            else ("dropped for diversity" if j.get("diversity_dropped") else "not kept")
        )
        out.append(
            f"  {j.get('judge')}: score {j.get('judge_score')} (value {_num(j.get('judge_value'))}), {kept}"
        )
        out += _wrapped("reason: ", j.get("judge_reason"))
        out += _wrapped("feedback: ", j.get("judge_feedback"))
        out += _wrapped("error: ", j.get("judge_error"))
        if j.get("signals"):
            out += _wrapped("signals: ", ", ".join(f"{k}={_num(v)}" for k, v in j["signals"].items()))
    else:
        out.append("  (not judged)")
    if story.corpus is not None:
        c = story.corpus
        out.append(
            f"  in training_corpus at position {c['position']}, {c.get('tokens')} tokens"
            if c.get("in_corpus", True) else "  not in training_corpus"
        )  # fmt: skip
    out += _section("7. Models and prompt versions")
    out += [f"  {k}: {v}" for k, v in story.models.items()] or ["  (unknown)"]
    out += _section("8. Materializations (latest in the catalog)")
    for m in story.materializations:
        part = f"[{m['partition_key']}]" if m.get("partition_key") else ""
        out.append(f"  {m['asset_key']}{part}: run {m.get('run_id')}, code {m.get('code_version')}, "
                   f"data {m.get('data_version')}, rows {m.get('row_count')}, at {m.get('materialized_at')}")  # fmt: skip
    if not story.materializations:
        out.append("  (none recorded)")
    if story.missing:
        out += _section("Not known (missing from the warehouse)")
        out += [f"  - {m}" for m in story.missing]
    if story.mismatches:
        out.append(_banner(story))
    return "\n".join(out) + "\n"


def _banner(story: Story) -> str:
    n = story.mismatches
    return f"!!!! {n} excerpt span{'s' if n > 1 else ''} do{'' if n > 1 else 'es'} NOT match the document text !!!!"


def _section(title: str) -> list[str]:
    return ["", f"== {title} =="]


def _wrapped(label: str, text: object, indent: int = 2, keep_lines: bool = False) -> list[str]:
    if text in (None, ""):
        return []
    pad = " " * indent
    if keep_lines:  # a passage: its own line breaks kept, each line wrapped under the label
        return [
            textwrap.fill(line, WIDTH, initial_indent=pad + label, subsequent_indent=pad + label)
            or pad + label
            for line in str(text).split("\n")
        ]
    return textwrap.wrap(
        str(text), WIDTH, initial_indent=pad + label, subsequent_indent=pad + " " * len(label)
    ) or [pad + label]


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
