"""The judge against hand labels: precision among kept pairs, recall and a confusion table per labels file
and split, from the labelled audit set (`audit/labels/*.jsonl`, rubric in `audit/RUBRIC.md`). `kept` is the
decision of the judge of the run each pair came from; the `judge_audit` asset re-scores them with today's.

    .venv/bin/python bench/audit_report.py [--split heldout]
"""

import argparse

from fi_resources.logic.audit import confusion, load_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["tune", "heldout", "all"], default="all")
    args = parser.parse_args()
    df = load_labels()
    if args.split != "all":
        df = df[df["split"] == args.split]
    print(confusion(df, ["file"]).to_string(index=False))


if __name__ == "__main__":
    main()
