"""Stages 3–4 (paper §3): teacher silver instantiations → instantiator examples → the student's pairs, read
by `logic.pairs.read_pair` → judged pairs (the paper's rubric, kept at `keep_score`)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from fi_resources.logic.excerpts import ELLIPSIS, EXCERPT_CLOSE, EXCERPT_OPEN
from fi_resources.logic.pairs import read_pair
from fi_resources.logic.parsing import format_instantiator_target
from fi_resources.logic.prompts import PROMPT_VERSION, instantiator_prompt
from fi_resources.logic.sampling import incompatible_pairs
from fi_resources.logic.stratify import balanced_sample, stratum
from fi_resources.logic.templates import TemplateError, parse_template
from fi_resources.parts import Judge, Progress, TeacherInstantiator, TextGenerator
from fi_resources.settings import InstantiationSettings, JudgeSettings
from fi_resources.stages import (
    Bars,
    Counts,
    Distribution,
    Funnel,
    Sample,
    StageResult,
    backend_stats,
    teacher_stats,
)

TokenCount = Callable[[str], int]
TEMPLATES_SHOWN = 10  # the most used templates in a shard's template-use chart


def score_bars(scores: pd.Series) -> Bars:
    """Pairs per judge score, 5 to 1 (every score shown, empty ones too), and the unscored."""
    counts = {str(s): int((scores == s).sum()) for s in range(5, 0, -1)}
    return Bars(counts | {"unscored": int(scores.isna().sum())}, "pairs per judge score")


def template_bars(templates: pd.Series) -> Bars:
    """How many kept pairs each template gave, most used first (at most TEMPLATES_SHOWN)."""
    top = templates.value_counts().head(TEMPLATES_SHOWN)
    return Bars({str(t): int(n) for t, n in top.items()}, "kept pairs per template")


SILVER_COLUMNS = ["doc_id", "template_id", "prompt", "target", "reason", "deliberately_incompatible"]

# `doc_id` is the passage the pair was made from; `excerpt_spans` are in its source document's coordinates
# (`source_doc_id`), `passage_spans` the same spans inside the passage text.
PAIR_COLUMNS = [
    "pair_id", "doc_id", "source_doc_id", "shard", "template_id", "query_id", "template", "instruction",
    "answer_markup", "answer", "excerpt_spans", "passage_spans", "grounding_ratio", "status", "raw_output",
    "decoded_tokens", "model", "prompt_version",
]  # fmt: skip

JUDGE_COLUMNS = ["judge_score", "judge_value", "judge_reason", "judge_feedback", "judge_error"]


def silver_instantiations(
    matches: pd.DataFrame,
    documents: pd.DataFrame,
    teacher: TeacherInstantiator,
    settings: InstantiationSettings,
) -> StageResult[pd.DataFrame]:
    """The teacher instantiates a seeded sample of matches until `silver_instantiations` succeed (its refusals
    are kept as reasons); plus ~`incompatible_fraction` deliberately mismatched pairs with target `null`."""
    docs = documents.set_index("doc_id")
    pool = matches.sample(n=min(len(matches), 3 * settings.silver_instantiations), random_state=settings.seed)
    rows: list[dict] = []
    for m in pool.itertuples():
        if sum(r["reason"] == "ok" for r in rows) >= settings.silver_instantiations:
            break
        text = docs.at[m.doc_id, "text"]
        out = teacher.instantiate(m.template, docs.at[m.doc_id, "title"], text)
        target = (
            format_instantiator_target(out.instruction, out.answer_markup) if out.reason == "ok" else None
        )
        rows.append(_silver_row(m.doc_id, m.template_id, m.template, text, target, out.reason, False))
    ok_pairs = [(r["template_id"], r["doc_id"]) for r in rows if r["reason"] == "ok"]
    rows += _null_rows(ok_pairs, matches, docs, settings)
    df = pd.DataFrame(rows, columns=SILVER_COLUMNS).assign(teacher=teacher.name)
    usable = df["target"].notna()
    return StageResult(
        df,
        {
            "rows": len(df),
            "training_examples": int(usable.sum()),
            "null_targets": int((df["target"] == "null").sum()),
            "teacher_outcomes": Counts(dict(Counter(df["reason"]))),
            **teacher_stats(teacher),
            "sample": Sample(df[usable], ["target"], width=240),
        },
    )


def _silver_row(doc_id, template_id, template, text, target, reason, incompatible) -> dict:
    return {
        "doc_id": doc_id,
        "template_id": template_id,
        "prompt": instantiator_prompt(template, text),
        "target": target,
        "reason": reason,
        "deliberately_incompatible": incompatible,
    }


def _null_rows(
    pairs: Sequence[tuple[str, str]],
    matches: pd.DataFrame,
    docs: pd.DataFrame,
    settings: InstantiationSettings,
) -> list[dict]:
    """Training rows with target `null` for ~`incompatible_fraction` deliberately mismatched (template_id,
    doc_id) pairs drawn from `pairs` (`docs` indexed by doc_id)."""
    templates = dict(zip(matches["template_id"], matches["template"], strict=False))
    return [
        _silver_row(
            doc_id, template_id, templates[template_id], docs.at[doc_id, "text"], "null", "incompatible", True
        )
        for template_id, doc_id in incompatible_pairs(pairs, settings.incompatible_fraction, settings.seed)
    ]


def instantiator_examples(silver: pd.DataFrame) -> list[tuple[str, str]]:
    """(prompt, target) pairs of the silver instantiations with a target (null targets included)."""
    train = silver[silver["target"].notna()]
    return [(p, " " + t) for p, t in zip(train["prompt"], train["target"], strict=True)]


ROUND2_COLUMNS = [*SILVER_COLUMNS, "judge_score", "stratum"]


def round2_instantiations(
    matches: pd.DataFrame,
    documents: pd.DataFrame,
    student: TextGenerator | None,
    student_name: str,
    judge: Judge | None,
    count_tokens: TokenCount,
    settings: InstantiationSettings,
    judge_settings: JudgeSettings,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """The second distillation round's training set (paper §3): the round-1 student instantiates a seeded
    sample of `round2_candidates` matches, the judge scores the valid pairs, and up to `round2_examples` of
    those scoring `keep_score` or more are chosen balanced over answer length, `<fi>` count and topic
    (`logic.stratify`); their targets are the student's own instructions and excerpt markup. Plus
    ~`incompatible_fraction` deliberately mismatched pairs with target `null`, as in round 1. With
    `instantiator_rounds` 1, no rows, and `student` and `judge` may be None (the caller need not load them)."""
    if settings.instantiator_rounds not in (1, 2):
        raise ValueError(f"instantiator_rounds must be 1 or 2, not {settings.instantiator_rounds}")
    empty = pd.DataFrame(columns=ROUND2_COLUMNS)
    if settings.instantiator_rounds == 1:
        return StageResult(empty, {"rows": 0, "round_2": "off (instantiator_rounds = 1)"})
    if matches.empty:
        return StageResult(empty, {"rows": 0, "round_2": "no matches to instantiate"})
    if student is None or judge is None:
        raise ValueError("round 2 needs the round-1 student and a judge")
    pool = matches.sample(n=min(len(matches), settings.round2_candidates), random_state=settings.seed)
    pairs = instantiate_pairs(pool, documents, student, student_name, count_tokens, settings, progress).value
    judged = judge_pairs(pairs, judge, judge_settings, progress).value
    passed = judged[(judged["judge_score"] >= judge_settings.keep_score).fillna(False).astype(bool)]
    passed = passed.reset_index(drop=True)
    strata = [
        stratum(i, a, _slot_count(t))
        for i, a, t in zip(passed["instruction"], passed["answer"], passed["template"], strict=True)
    ]
    chosen = passed.iloc[balanced_sample(strata, settings.round2_examples, settings.seed)]
    docs = documents.set_index("doc_id")
    rows = [
        _silver_row(
            m.doc_id, m.template_id, m.template, docs.at[m.doc_id, "text"],
            format_instantiator_target(m.instruction, m.answer_markup), "ok", False,
        )
        | {"judge_score": int(m.judge_score), "stratum": strata[k]}
        for k, m in zip(chosen.index, chosen.itertuples(), strict=True)
    ]  # fmt: skip
    chosen_pairs = list(zip(chosen["template_id"], chosen["doc_id"], strict=True))
    rows += [
        r | {"judge_score": None, "stratum": "null"}
        for r in _null_rows(chosen_pairs, matches, docs, settings)
    ]
    df = pd.DataFrame(rows, columns=ROUND2_COLUMNS).assign(teacher=student_name)
    df["judge_score"] = pd.array(df["judge_score"], dtype="Int64")
    return StageResult(
        df,
        {
            "rows": len(df),
            "training_examples": len(df),
            "null_targets": int((df["target"] == "null").sum()),
            "funnel": Funnel(
                [
                    ("candidates", len(pool)),
                    ("valid pairs", int((pairs["status"] == "ok").sum())),
                    (f"judge score >= {judge_settings.keep_score}", len(passed)),
                    ("chosen (balanced)", len(chosen)),
                ],
                "round-1 student outputs per step",
            ),
            "candidate_outcomes": Counts(dict(Counter(pairs["status"])), total=len(pairs)),
            "passed_per_stratum": Bars(dict(sorted(Counter(strata).items())), "passing pairs per stratum"),
            "chosen_per_stratum": Bars(
                dict(sorted(Counter(df["stratum"]).items())), "chosen examples per stratum"
            ),
            **backend_stats(student),
            "sample": Sample(df[df["target"] != "null"], ["stratum", "judge_score", "target"], width=240),
        },
    )


def _slot_count(template: str) -> int:
    try:
        return parse_template(template).n_slots
    except TemplateError:
        return 0


def instantiator_new_tokens(settings: InstantiationSettings) -> tuple[str, ...]:
    """Excerpt markup as single new tokens instead of 3–4 each, when `markup_tokens` is on (README: why off)."""
    return (EXCERPT_OPEN, ELLIPSIS, EXCERPT_CLOSE) if settings.markup_tokens else ()


def instantiate_pairs(
    matches: pd.DataFrame,
    documents: pd.DataFrame,
    student: TextGenerator,
    student_name: str,
    count_tokens: TokenCount,
    settings: InstantiationSettings,
    progress: Progress | None = None,
) -> StageResult[pd.DataFrame]:
    """The student fills each matched template from its document; every output is read by `read_pair`
    (parsed, excerpts expanded, grounding checked), failures kept with their reason."""
    docs = documents.set_index("doc_id")
    prompts = [
        instantiator_prompt(t, docs.at[d, "text"])
        for t, d in zip(matches["template"], matches["doc_id"], strict=True)
    ]
    # Copy-constrained markers (where the backend decodes here): no unknown excerpts, no unbalanced tags.
    copy = settings.copy_constrained_excerpts and getattr(student, "supports_copy_constraint", False)
    extra = {"copy_sources": [docs.at[d, "text"] for d in matches["doc_id"]]} if copy else {}
    raw = student.generate(prompts, max_new_tokens=80, progress=progress, **extra)
    rows = []
    for m, text in zip(matches.itertuples(), raw, strict=True):
        pair = read_pair(
            text, docs.at[m.doc_id, "text"], settings.min_grounding, settings.finish_sentence_chars
        )
        offset = int(docs.at[m.doc_id, "offset"])
        rows.append(
            {
                "pair_id": m.match_id,
                "doc_id": m.doc_id,
                "source_doc_id": docs.at[m.doc_id, "source_doc_id"],
                "shard": m.shard,
                "template_id": m.template_id,
                "query_id": m.query_id,
                "template": m.template,
                "instruction": pair.instruction,
                "answer_markup": pair.answer_markup,
                "answer": pair.answer,
                "excerpt_spans": json.dumps(source_spans(pair.doc_spans, offset)),
                "passage_spans": json.dumps([list(s) for s in pair.doc_spans]),
                "grounding_ratio": pair.grounding_ratio,
                "status": pair.status,
                "raw_output": text,
                "decoded_tokens": count_tokens(text),
                "model": student_name,
                "prompt_version": PROMPT_VERSION,
            }
        )
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    ok = df[df["status"] == "ok"]
    answer_tokens = sum(count_tokens(a) for a in ok["answer"])
    return StageResult(
        df,
        {
            "rows": len(df),
            "valid_pairs": len(ok),
            "valid_share": round(len(ok) / max(1, len(df)), 3),
            "outcomes": Counts(dict(Counter(df["status"])), total=len(df)),
            "copy_constrained": bool(copy),
            "mean_grounding_ratio": round(float(ok["grounding_ratio"].mean()), 3) if len(ok) else 0.0,
            "grounding_histogram": Distribution(
                ok["grounding_ratio"].tolist(), "share of answer copied (valid)"
            ),
            # Tokens of the raw outputs (cached ones too): what excerpt copying is measured against.
            "decoded_tokens": int(df["decoded_tokens"].sum()),
            "decoded_tokens_per_valid_answer_token": round(
                float(ok["decoded_tokens"].sum()) / answer_tokens, 3
            )
            if answer_tokens
            else "n/a",
            **backend_stats(student),
            "sample": Sample(ok, ["instruction", "answer_markup", "answer"], width=200),
        },
    )


def diverse_keep(df: pd.DataFrame, passed: pd.Series, max_template_share: float) -> pd.Series:
    """Among pairs that passed the score: one pair per distinct answer text, and per template at most
    `max_template_share` of the passing pairs (at least one), best `judge_value` first. A template that fits
    every document, or one excerpt answering several templates, would otherwise fill the corpus."""
    order = df[passed].sort_values(["judge_value", "pair_id"], ascending=[False, True])
    cap = max(1, int(max_template_share * len(order)))
    per_template: Counter = Counter()
    answers: set[str] = set()
    keep = pd.Series(False, index=df.index)
    for i, row in order.iterrows():
        if row["answer"] in answers or per_template[row["template_id"]] >= cap:
            continue
        answers.add(row["answer"])
        per_template[row["template_id"]] += 1
        keep[i] = True
    return keep


def source_spans(passage_spans: Sequence[tuple[int, int]], offset: int) -> list[list[int]]:
    """Spans inside a passage moved to its source document: a passage is `source[offset:offset + len]`."""
    return [[start + offset, end + offset] for start, end in passage_spans]


def judge_pairs(
    pairs: pd.DataFrame, judge: Judge, settings: JudgeSettings, progress: Progress | None = None
) -> StageResult[pd.DataFrame]:
    """The judge scores every valid pair 1–5; pairs scoring `keep_score` or more are kept. A pair whose judge
    output cannot be parsed gets no score (and is not kept); the reason is recorded."""
    valid = pairs[pairs["status"] == "ok"].reset_index(drop=True)
    start = time.perf_counter()
    scored = judge.score(
        valid["instruction"].tolist(), valid["answer"].tolist(), progress, valid["template"].tolist()
    )
    seconds = time.perf_counter() - start
    scores = pd.DataFrame(
        scored, columns=list(dict.fromkeys([*(scored[0] if scored else {}), *JUDGE_COLUMNS]))
    )
    df = pd.concat([valid, scores], axis=1)
    df["judge_score"] = pd.array(df["judge_score"], dtype="Int64")
    df["judge_value"] = df["judge_value"].astype("float64")
    df["judge"] = judge.name
    passed = (df["judge_score"] >= settings.keep_score).fillna(False).astype(bool)
    df["kept"] = passed & diverse_keep(df, passed, settings.max_template_share)
    df["diversity_dropped"] = passed & ~df["kept"]
    return StageResult(
        df,
        {
            "rows": len(df),
            "judge": judge.name,
            "kept": int(df["kept"].sum()),
            "passed_score": int(passed.sum()),
            "funnel": Funnel(
                [
                    ("matches", len(pairs)),
                    ("valid pairs", len(valid)),
                    (f"judge score >= {settings.keep_score}", int(passed.sum())),
                    ("kept (distinct, template cap)", int(df["kept"].sum())),
                ],
                "pairs per step (this shard)",
            ),
            "dropped_for_diversity": int(df["diversity_dropped"].sum()),
            "distinct_answers_per_kept": round(
                df.loc[df["kept"], "answer"].nunique() / max(1, df["kept"].sum()), 3
            ),
            "pass_rate": round(float(df["kept"].mean()), 3) if len(df) else 0.0,
            "paper_pass_rate": 0.58,
            "score_distribution": score_bars(df["judge_score"]),
            "template_use": template_bars(df.loc[df["kept"], "template"]),
            "unscored": int(df["judge_score"].isna().sum()),
            "unscored_reasons": Counts(dict(Counter(df["judge_error"].dropna().str.split(":").str[0]))),
            "pairs_per_s": round(len(df) / seconds, 2) if seconds else 0.0,
            "sample": Sample(
                df.sort_values("judge_value", ascending=False),
                ["judge_score", "instruction", "answer", "judge_reason"],
            ),
        },
    )
