"""The audit set's loader and confusion table, and the diversity rule of judged pairs (pure pandas)."""

import json

import dagster as dg
import pandas as pd
import pytest

from fi_resources.logic.audit import AUDIT_LABELS, confusion, corpus_of, load_labels
from fi_resources.stages.generation import diverse_keep


def test_audit_labels_and_confusion(tmp_path):
    rows = [
        {"pair_id": f"p{i}", "doc_id": "d", "title": "t", "template": "x", "instruction": "q", "answer": "a",
         "sensible": s, "split": sp, "kept": k}
        for i, (s, sp, k) in enumerate([(True, "heldout", True), (False, "heldout", True), (True, "tune", False)])
    ]  # fmt: skip
    (tmp_path / "embedded-lee-news-abc1234.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    df = load_labels(tmp_path)
    assert corpus_of("embedded-lee-news-abc1234.jsonl") == "lee-news"
    table = confusion(df, ["split"]).set_index("split")
    assert table.loc["heldout", "precision"] == 0.5 and table.loc["heldout", "recall"] == 1.0
    assert pd.isna(table.loc["tune", "precision"]) and table.loc["tune", "recall"] == 0.0
    (tmp_path / "broken.jsonl").write_text("{not json")
    with pytest.raises(ValueError, match="broken.jsonl: line 1"):
        load_labels(tmp_path)


def test_the_committed_audit_set_loads_with_both_splits_and_corpora():
    df = load_labels(AUDIT_LABELS)
    assert len(df) >= 95 and set(df["split"]) == {"tune", "heldout"}
    assert {"wikipedia", "lee-news"} <= set(df["corpus"])


def test_diverse_keep_caps_templates_and_repeated_answers():
    df = pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(6)],
            "template_id": ["t1", "t1", "t1", "t2", "t3", "t4"],
            "answer": ["a", "b", "c", "a", "d", "e"],
            "judge_value": [5.0, 4.9, 4.8, 4.7, 4.6, 2.0],
        }
    )
    passed = df["judge_value"] >= 3.5
    keep = diverse_keep(df, passed, max_template_share=0.4)  # cap = int(0.4 * 5) = 2 per template
    assert keep.tolist() == [True, True, False, False, True, False]


@pytest.mark.parametrize(
    ("kept_sensible", "kept_not", "passes"),
    [(4, 1, True), (3, 1, False), (0, 0, False)],  # 0.8 passes, 0.75 fails, keeping nothing fails
)
def test_the_audit_check_compares_heldout_precision_with_the_bar(kept_sensible, kept_not, passes):
    from fi_assets.checks import judge_precise_on_audit
    from fi_resources.resources import JudgeSettingsResource

    rows = [(True, True)] * kept_sensible + [(False, True)] * kept_not + [(True, False), (False, False)]
    df = pd.DataFrame(
        {
            "split": ["heldout"] * len(rows) + ["tune"],
            "sensible": [s for s, _ in rows] + [True],
            "kept": [k for _, k in rows] + [True],
        }
    )
    result = judge_precise_on_audit(judge_audit=df, judge_settings=JudgeSettingsResource())
    assert result.passed is passes
    assert result.metadata["heldout_kept"].value == kept_sensible + kept_not
    # Dagster stores check metadata serialized: numpy scalars fail there, so every value is a Python one.
    dg.serialize_value(result.metadata)
