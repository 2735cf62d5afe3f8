"""The judge against hand labels: precision among kept pairs, recall and a confusion table per corpus and
split, from the labelled audit set (`audit/labels/*.jsonl`, rubric in `audit/RUBRIC.md`).

    .venv/bin/python bench/audit_report.py [--split heldout]
"""

import argparse
import json
from pathlib import Path

import pandas as pd

LABELS = Path(__file__).resolve().parents[1] / "audit" / "labels"


def load_labels(folder: Path = LABELS) -> pd.DataFrame:
    rows = [
        {**json.loads(line), "file": path.name}
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_text(encoding="utf8").splitlines()
        if line.strip()
    ]
    if not rows:
        raise SystemExit(f"no labels under {folder}")
    return pd.DataFrame(rows)


def report(df: pd.DataFrame) -> pd.DataFrame:
    """Per labels file: pairs, sensible share, and the judge's precision (sensible among kept) and recall."""
    out = []
    for name, g in df.groupby("file"):
        kept, sensible = g["kept"].astype(bool), g["sensible"].astype(bool)
        out.append(
            {
                "labels": name,
                "pairs": len(g),
                "sensible": int(sensible.sum()),
                "kept": int(kept.sum()),
                "kept_sensible": int((kept & sensible).sum()),
                "kept_not_sensible": int((kept & ~sensible).sum()),
                "dropped_sensible": int((~kept & sensible).sum()),
                "dropped_not_sensible": int((~kept & ~sensible).sum()),
                "precision": round((kept & sensible).sum() / kept.sum(), 3) if kept.any() else None,
                "recall": round((kept & sensible).sum() / sensible.sum(), 3) if sensible.any() else None,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["tune", "heldout", "all"], default="all")
    args = parser.parse_args()
    df = load_labels()
    if args.split != "all":
        df = df[df["split"] == args.split]
    print(report(df).to_string(index=False))


if __name__ == "__main__":
    main()
