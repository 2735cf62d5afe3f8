"""Quality gates as asset checks: grammar validity, grounding, judge pass rate and validation, corpus budget,
export round trip."""

from pathlib import Path

import dagster as dg
import pandas as pd

from fi_assets.corpus import corpus_export, training_corpus
from fi_assets.generation import instantiated_pairs, instantiator, judged_pairs
from fi_assets.judging import judge_audit, judge_validation
from fi_assets.templates import genericizer, query_templates
from fi_resources.logic.audit import confusion
from fi_resources.logic.budget import budget_violations, pair_tokens
from fi_resources.logic.templates import validate_template
from fi_resources.resources import InstantiationSettingsResource, JudgeSettingsResource, ModelsResource
from fi_resources.stages.corpus import document_token_counts
from fi_resources.warehouse import Artifact


@dg.asset_check(
    asset=query_templates, description="Every template in the bank parses under the strict <fi> grammar."
)
def bank_templates_parse(query_templates: pd.DataFrame) -> dg.AssetCheckResult:
    valid = query_templates[query_templates["valid"]] if len(query_templates) else query_templates
    bad = [t for t in valid.get("template", []) if validate_template(t)[0] is None]
    return dg.AssetCheckResult(passed=not bad, metadata={"templates": len(valid), "unparseable": len(bad)})


@dg.asset_check(
    asset=query_templates, description="At least 20 % of genericizer outputs are valid templates."
)
def bank_valid_share(query_templates: pd.DataFrame) -> dg.AssetCheckResult:
    share = float(query_templates["valid"].mean()) if len(query_templates) else 0.0
    return dg.AssetCheckResult(
        passed=share >= 0.2, severity=dg.AssetCheckSeverity.WARN, metadata={"valid_share": round(share, 3)}
    )


def _student_trained(student: Artifact) -> dg.AssetCheckResult:
    examples = int(student.info.get("examples") or 0)
    return dg.AssetCheckResult(
        passed=examples > 0,
        metadata={"examples": examples, "untrained": student.info.get("untrained", "")},
    )


@dg.asset_check(
    asset=genericizer, description="The genericizer was fine-tuned on at least one silver template."
)
def genericizer_trained(genericizer: Artifact) -> dg.AssetCheckResult:
    return _student_trained(genericizer)


@dg.asset_check(
    asset=instantiator, description="The instantiator was fine-tuned on at least one silver instantiation."
)
def instantiator_trained(instantiator: Artifact) -> dg.AssetCheckResult:
    return _student_trained(instantiator)


@dg.asset_check(
    asset=instantiated_pairs, description="Every valid pair's answer is at least 80 % document text."
)
def pairs_grounded(
    instantiated_pairs: pd.DataFrame, instantiation_settings: InstantiationSettingsResource
) -> dg.AssetCheckResult:
    ok = instantiated_pairs[instantiated_pairs["status"] == "ok"]
    low = int((ok["grounding_ratio"] < instantiation_settings.min_grounding).sum())
    return dg.AssetCheckResult(passed=low == 0, metadata={"valid_pairs": len(ok), "below_threshold": low})


@dg.asset_check(
    asset=judged_pairs,
    description="Judge pass rate is neither 0 % nor 100 % (a judge that always agrees judges nothing).",
)
def judge_pass_rate(judged_pairs: pd.DataFrame) -> dg.AssetCheckResult:
    rate = float(judged_pairs["kept"].mean()) if len(judged_pairs) else 0.0
    return dg.AssetCheckResult(
        passed=0.0 < rate < 1.0, severity=dg.AssetCheckSeverity.WARN, metadata={"pass_rate": round(rate, 3)}
    )


@dg.asset_check(
    asset=judge_validation,
    description="On the check set's held-out half, the judge scores the correct pair above its corrupted "
    "twin at least `judge_min_win_rate` (80 %) of the time.",
)
def judge_beats_corruptions(
    judge_validation: pd.DataFrame, judge_settings: JudgeSettingsResource
) -> dg.AssetCheckResult:
    test = judge_validation[judge_validation["split"] == "test"]
    rate = float(test["correct_wins"].mean()) if len(test) else 0.0
    per_type = {k: round(float(v), 3) for k, v in test.groupby("corruption")["correct_wins"].mean().items()}
    return dg.AssetCheckResult(
        passed=bool(len(test)) and rate >= judge_settings.judge_min_win_rate,
        metadata={
            "test_win_rate": round(rate, 3),
            "threshold": judge_settings.judge_min_win_rate,
            "twins": len(test),
            "per_corruption": dg.MetadataValue.json(per_type),
        },
    )


@dg.asset_check(
    asset=judge_audit,
    description="On the held-out split of the hand-labelled audit set, at least `judge_min_audit_precision` "
    "(80 %) of the pairs the judge keeps are sensible (audit/RUBRIC.md); a judge that keeps none fails.",
)
def judge_precise_on_audit(
    judge_audit: pd.DataFrame, judge_settings: JudgeSettingsResource
) -> dg.AssetCheckResult:
    table = confusion(judge_audit[judge_audit["split"] == "heldout"].assign(all="all"), ["all"])
    row = table.iloc[0] if len(table) else None
    precision = row["precision"] if row is not None and pd.notna(row["precision"]) else None
    return dg.AssetCheckResult(
        passed=bool(precision is not None and precision >= judge_settings.judge_min_audit_precision),
        metadata={
            "heldout_precision": float(precision) if precision is not None else None,
            "heldout_recall": float(row["recall"]) if row is not None and pd.notna(row["recall"]) else None,
            "heldout_kept": int(row["kept"]) if row is not None else 0,
            "threshold": judge_settings.judge_min_audit_precision,
        },
    )


@dg.asset_check(
    asset=training_corpus,
    additional_ins={"documents": dg.AssetIn("documents")},
    description="Token-for-token: over every prefix of the documents (corpus order), pair tokens never "
    "exceed document tokens; each pair's token count matches its text.",
)
def corpus_within_budget(
    training_corpus: pd.DataFrame, documents: pd.DataFrame, models: ModelsResource
) -> dg.AssetCheckResult:
    count = models.parts().store.token_counter()
    order = documents.sort_values(["shard", "doc_id"])
    doc_tokens = list(document_token_counts(order, count).items())
    used = training_corpus.groupby("doc_id")["tokens"].sum().to_dict() if len(training_corpus) else {}
    violations = budget_violations(doc_tokens, {k: int(v) for k, v in used.items()})
    miscounted = sum(
        pair_tokens(count, t) != n
        for t, n in zip(training_corpus["text"], training_corpus["tokens"], strict=True)
    )
    return dg.AssetCheckResult(
        passed=not violations and not miscounted,
        metadata={
            "corpus_tokens": int(sum(used.values())),
            "document_tokens": sum(n for _, n in doc_tokens),
            "prefix_violations": len(violations),
            "first_violation": violations[0] if violations else "",
            "miscounted_pairs": int(miscounted),
        },
    )


@dg.asset_check(
    asset=corpus_export,
    additional_ins={"training_corpus": dg.AssetIn("training_corpus")},
    description="The exported files reload with the corpus's rows and columns.",
)
def export_reloads(corpus_export: Artifact, training_corpus: pd.DataFrame) -> dg.AssetCheckResult:
    import datasets

    root = Path(corpus_export.path)
    problems = []
    frames = {
        "parquet": pd.read_parquet(root / "data/train.parquet"),
        "jsonl": pd.read_json(root / "data/train.jsonl", lines=True, dtype=False),
        "hf": datasets.load_from_disk(str(root / "hf")).to_pandas(),
    }
    for name, df in frames.items():
        if list(df.columns) != list(training_corpus.columns):
            problems.append(f"{name}: columns differ")
        if len(df) != len(training_corpus) or list(df["pair_id"]) != list(training_corpus["pair_id"]):
            problems.append(f"{name}: rows differ")
    if not (root / "README.md").read_text(encoding="utf8").startswith("---\n"):
        problems.append("README.md lacks the YAML header")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})


checks = [
    genericizer_trained,
    instantiator_trained,
    bank_templates_parse,
    bank_valid_share,
    pairs_grounded,
    judge_pass_rate,
    judge_beats_corruptions,
    judge_precise_on_audit,
    corpus_within_budget,
    export_reloads,
]
