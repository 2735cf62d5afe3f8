"""Distributions, funnels and per-category counts reach the UI as charts (PNG in Markdown) with their table."""

import base64
import re

import pandas as pd

from fi_assets.common import to_metadata
from fi_resources.stages import Bars, Distribution, Funnel
from fi_resources.stages.generation import TEMPLATES_SHOWN, score_bars, template_bars

PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def _png(md: str) -> bytes:
    found = PNG.search(md)
    assert found, md[:200]
    return base64.b64decode(found.group(1))


def test_charts_are_png_with_their_table():
    meta = to_metadata(
        {
            "scores": Bars({"5": 3, "4": 0, "unscored": 1}, "pairs per judge score"),
            "funnel": Funnel([("matches", 10), ("valid", 6), ("kept", 2)], "pairs per step"),
            "grounding": Distribution([0.8, 0.9, 1.0], "share copied"),
            "nothing": Bars({}, "kept pairs per template"),
        }
    )
    for key in ("scores", "funnel", "grounding"):
        assert _png(meta[key].value).startswith(b"\x89PNG\r\n\x1a\n"), key
    assert "| 4 | 0 |" in meta["scores"].value and "| unscored | 1 |" in meta["scores"].value
    assert "| kept | 2 |" in meta["funnel"].value
    assert meta["nothing"] == "n/a"


def test_score_bars_show_every_score_and_the_unscored():
    bars = score_bars(pd.Series([5, 5, 3, None], dtype="Int64"))
    assert dict(bars.counts) == {"5": 2, "4": 0, "3": 1, "2": 0, "1": 0, "unscored": 1}


def test_template_bars_most_used_first_and_capped():
    templates = pd.Series([f"t{i}" for i in range(TEMPLATES_SHOWN + 5)] + ["t3", "t3", "t7"])
    bars = template_bars(templates)
    assert list(bars.counts)[:2] == ["t3", "t7"] and bars.counts["t3"] == 3
    assert len(bars.counts) == TEMPLATES_SHOWN
