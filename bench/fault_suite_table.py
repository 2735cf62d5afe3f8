"""The fault suite's table, measured: runs `pytest tests/faults` once and prints, per case, what each test
recorded (tests/faults/conftest.py `fault`: outcome, rows lost, rows duplicated, time bound) beside the
seconds JUnit measured and whether it passed, then totals. Exits 1 if a case failed, recorded no outcome,
lost or duplicated a row, or ran over its bound.

    python bench/fault_suite_table.py [extra pytest args]
"""

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD_INPUT = {"clear error", "counted drop", "refused", "stopped"}  # outcomes of a case that feeds bad input


def run_suite(extra: list[str]) -> tuple[ET.Element, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "faults.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/faults", "-q", f"--junitxml={xml}", *extra]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - start
        if not xml.exists():
            sys.exit(
                f"pytest wrote no JUnit XML (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr}"
            )
        summary = (proc.stdout.strip().splitlines() or [""])[-1]
        return ET.parse(xml).getroot(), seconds, summary


def cases(root: ET.Element) -> list[dict]:
    rows = []
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        module = case.get("classname", "").rsplit(".", 1)[-1]
        status = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                status = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
        rows.append({
            "case": f"{module}::{case.get('name')}",
            "outcome": props.get("outcome", "(none)"),
            "lost": props.get("rows_lost", "n/a"),
            "dup": props.get("rows_duplicated", "n/a"),
            "seconds": float(case.get("time") or 0),
            "bound": props.get("time_bound_s", "n/a"),
            "status": status,
        })  # fmt: skip
    return rows


def problems(row: dict) -> list[str]:
    if row["status"] == "skipped":
        return []
    found = [] if row["status"] == "passed" else [row["status"]]
    if row["outcome"] == "(none)":
        found.append("no outcome recorded")
    if row["lost"] not in ("n/a", "0") or row["dup"] not in ("n/a", "0"):
        found.append("rows lost or duplicated")
    if row["bound"] != "n/a" and row["seconds"] > float(row["bound"]):
        found.append("over its bound")
    return found


def cell(text: str, width: int = 90) -> str:
    text = text.replace("|", "\\|").replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> int:
    root, wall, summary = run_suite(sys.argv[1:])
    rows = cases(root)
    print("| case | outcome | rows lost | rows duplicated | seconds | bound (s) | passed |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        passed = {"passed": "yes", "skipped": "skipped"}.get(r["status"], "NO")
        if problems(r):
            passed = "NO: " + ", ".join(problems(r))
        print(
            f"| `{cell(r['case'])}` | {r['outcome']} | {r['lost']} | {r['dup']} | {r['seconds']:.2f} "
            f"| {r['bound']} | {passed} |"
        )
    ran = [r for r in rows if r["status"] != "skipped"]
    counted = [r for r in ran if r["lost"] != "n/a"]
    bad = [r for r in ran if r["outcome"] in BAD_INPUT]
    failing = [r for r in rows if problems(r)]
    outcomes = Counter(r["outcome"] for r in ran)
    slowest = max(ran, key=lambda r: r["seconds"])
    print()
    print(f"- cases: {len(rows)} ({len(ran)} ran, {len(rows) - len(ran)} skipped); failing: {len(failing)}")
    print(f"- outcomes: {', '.join(f'{k} {v}' for k, v in outcomes.most_common())}")
    print(f"- kinds of bad input (cases ending in {', '.join(sorted(BAD_INPUT))}): {len(bad)}")
    lost = sum(int(r["lost"]) for r in counted)
    dup = sum(int(r["dup"]) for r in counted)
    print(
        f"- cases counting rows: {len(counted)}; rows lost {lost}, duplicated {dup}: all zero: {lost == dup == 0}"
    )
    bounded = [r for r in ran if r["bound"] != "n/a"]
    print(
        f"- cases with a time bound: {len(bounded)}, over it: {sum('over its bound' in problems(r) for r in rows)}"
    )
    print(
        f"- max seconds: {slowest['seconds']:.2f} (`{cell(slowest['case'])}`); suite wall time {wall:.1f} s"
    )
    print(f"- pytest: {summary}")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
