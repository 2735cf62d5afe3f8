"""The query inbox refuses what the document inbox refuses: a symlink out of it is never read, and every
refused entry is named with its reason (fi_resources.sources.read_user_query_files)."""

import pandas as pd

from fi_resources.sources import read_user_query_files
from tests.faults.conftest import write_jsonl


def test_bad_query_files_are_refused_by_name_and_the_good_ones_read(inbox, tmp_path, fault):
    pd.DataFrame({"question": ["When did the harbour open?", "Who built it?"]}).to_csv(
        inbox / "good.csv", index=False
    )
    write_jsonl(inbox / "typed.jsonl", [{"query": ["a", "list"]}, {"query": 42}, {"query": "Why is it red?"}])
    secret = write_jsonl(tmp_path / "secret.jsonl", [{"query": "What is the admin password?"}])
    (inbox / "leak.jsonl").symlink_to(secret)
    (inbox / "gone.jsonl").symlink_to(inbox / "missing.jsonl")
    (inbox / "notes.txt").write_text("not a query file")
    (inbox / "empty.csv").touch()
    queries, refused = read_user_query_files(inbox)
    assert sorted(q for q in queries["query"] if q) == [
        "When did the harbour open?",
        "Who built it?",
        "Why is it red?",
    ]
    assert "admin" not in " ".join(queries["query"])  # the symlink out of the inbox was not read
    assert not queries["query"].str.startswith("[").any()  # the list and number became "", not their repr
    reasons = {r.name: r.reason for r in refused}
    assert set(reasons) == {"leak.jsonl", "gone.jsonl", "notes.txt", "empty.csv"}
    assert "outside the inbox" in reasons["leak.jsonl"] and "dangling symlink" in reasons["gone.jsonl"]
    # 5 rows in the two readable files; the list and the number are kept as "" (counted as dropped).
    blank = int((queries["query"] == "").sum())
    fault("refused", rows_in=5, kept=[q for q in queries["query"] if q], dropped=blank)
