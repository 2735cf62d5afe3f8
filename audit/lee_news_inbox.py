"""Write the audit's second corpus into a document inbox: 30 of the 300 untitled Australian news texts in
gensim's `lee_background.cor`, drawn with random.Random(0), as shards lee-news-000..002 of 10 rows each.

    .venv/bin/python audit/lee_news_inbox.py [inbox]   # default: $FI_HOME/inbox/documents (FI_HOME=.fi)

The rows have no title (news texts carry none), so each is shown as "<shard> #<row>".
"""

from __future__ import annotations

import importlib.resources as ir
import json
import os
import random
import sys
from pathlib import Path

LEE = "test/test_data/lee_background.cor"
SHARDS, ROWS = 3, 10


def lee_texts() -> list[str]:
    lines = (ir.files("gensim") / LEE).read_text(encoding="latin-1").splitlines()
    return [line.strip() for line in lines if line.strip()]


def main(inbox: Path) -> None:
    drawn = random.Random(0).sample(lee_texts(), SHARDS * ROWS)
    inbox.mkdir(parents=True, exist_ok=True)
    for s in range(SHARDS):
        path = inbox / f"lee-news-{s:03d}.jsonl"
        rows = drawn[s * ROWS : (s + 1) * ROWS]
        path.write_text(
            "".join(json.dumps({"text": t, "source": "gensim lee_background.cor"}) + "\n" for t in rows)
        )
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    home = Path(os.environ.get("FI_HOME", ".fi"))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else home / "inbox" / "documents")
