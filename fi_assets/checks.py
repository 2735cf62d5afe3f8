"""Quality gates as asset checks: grammar validity, grounding, judge pass rate, corpus budget."""

import dagster as dg
import pandas as pd

from fi_assets.corpus import training_corpus
from fi_assets.generation import instantiated_pairs, judged_pairs
from fi_assets.templates import query_templates
from fi_resources.logic.templates import validate_template
from fi_resources.resources import ModelsResource, PipelineSettings


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


@dg.asset_check(
    asset=instantiated_pairs, description="Every valid pair's answer is at least 80 % document text."
)
def pairs_grounded(instantiated_pairs: pd.DataFrame, settings: PipelineSettings) -> dg.AssetCheckResult:
    ok = instantiated_pairs[instantiated_pairs["status"] == "ok"]
    low = int((ok["grounding_ratio"] < settings.min_grounding).sum())
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
    asset=training_corpus,
    additional_ins={"documents": dg.AssetIn("documents")},
    description="Token-for-token: corpus tokens never exceed the documents' tokens.",
)
def corpus_within_budget(
    training_corpus: pd.DataFrame, documents: pd.DataFrame, models: ModelsResource
) -> dg.AssetCheckResult:
    tok = models.tokenizer()
    doc_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in documents["text"])
    used = int(training_corpus["tokens"].sum()) if len(training_corpus) else 0
    return dg.AssetCheckResult(
        passed=used <= doc_tokens, metadata={"corpus_tokens": used, "document_tokens": doc_tokens}
    )


checks = [bank_templates_parse, bank_valid_share, pairs_grounded, judge_pass_rate, corpus_within_budget]
