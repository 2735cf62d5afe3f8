"""The hand-labelled audit set (`audit/labels/*.jsonl`, rubric in `audit/RUBRIC.md`): loading it, and the
judge's precision, recall and confusion table against its labels. Pure pandas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

AUDIT_LABELS = Path(__file__).resolve().parents[2] / "audit" / "labels"
LABEL_COLUMNS = ["file", "corpus", "pair_id", "doc_id", "title", "template", "instruction", "answer",
                 "sensible", "split", "kept"]  # fmt: skip


def corpus_of(file_name: str) -> str:
    """'embedded-lee-news-23d7503.jsonl' → 'lee-news': the profile prefix and the commit suffix dropped."""
    stem = re.sub(r"\.jsonl$", "", file_name)
    parts = stem.split("-")
    return "-".join(parts[1:-1]) or stem


def load_labels(folder: Path = AUDIT_LABELS) -> pd.DataFrame:
    """Every labelled pair, with its file and corpus; `kept` is the decision of the judge of its run."""
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n} is not valid JSON ({exc.msg})") from exc
            rows.append({**row, "file": path.name, "corpus": corpus_of(path.name)})
    if not rows:
        raise ValueError(f"no audit labels under {folder}")
    df = pd.DataFrame(rows)
    missing = set(LABEL_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"audit labels under {folder} lack the fields {sorted(missing)}")
    return df[LABEL_COLUMNS].astype({"sensible": bool, "kept": bool})


def confusion(df: pd.DataFrame, by: list[str], kept: str = "kept") -> pd.DataFrame:
    """Per group: pairs, sensible, kept, the four confusion cells, precision (sensible among kept) and recall
    (kept among sensible); None where undefined."""
    out = []
    for key, g in df.groupby(by, sort=True):
        k, s = g[kept].astype(bool), g["sensible"].astype(bool)
        out.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "pairs": len(g),
                "sensible": int(s.sum()),
                "kept": int(k.sum()),
                "kept_sensible": int((k & s).sum()),
                "kept_not_sensible": int((k & ~s).sum()),
                "dropped_sensible": int((~k & s).sum()),
                "dropped_not_sensible": int((~k & ~s).sum()),
                "precision": round(float((k & s).sum() / k.sum()), 3) if k.any() else None,
                "recall": round(float((k & s).sum() / s.sum()), 3) if s.any() else None,
            }
        )
    return pd.DataFrame(out)
