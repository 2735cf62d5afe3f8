"""Reading one pair's lineage out of a warehouse, read-only: the Parquet files directly (filtered on the
join key, so a big table is not loaded whole) and the catalog through `Warehouse.read_only_query`. Nothing
here writes under the data home or holds DuckDB's file lock against the pipeline."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fi_resources.logic.lineage import (
    NO_PAIRS,
    STORY_TABLES,
    Rows,
    Story,
    UnknownPair,
    build_story,
    resolve_pair_id,
)
from fi_resources.stages.generation import PAIR_COLUMNS
from fi_resources.warehouse import Warehouse, default_home

PAIR_TABLES = ("instantiated_pairs", "judged_pairs")
ARTIFACT_TABLES = ("genericizer", "instantiator", "local_embedder", "template_index")
TEACHER_TABLES = ("silver_templates", "silver_instantiations")


class NoWarehouse(FileNotFoundError):
    """The data home has no tables at all."""


class WarehouseReader:
    def __init__(self, home: str | Path | None = None):
        home = Path(home).resolve() if home else default_home()
        if not (home / "tables").is_dir():
            # Checked before `Warehouse`, which would create the folder.
            raise NoWarehouse(f"no warehouse at {home} (no tables/ folder): set FI_HOME or pass --home")
        self.warehouse = Warehouse(home)

    def _files(self, table: str) -> list[Path] | None:
        folder = self.warehouse.table_dir(table)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        return files or None

    def rows(
        self,
        table: str,
        column: str | None = None,
        values: Sequence | None = None,
        columns: list | None = None,
    ) -> Rows | None:
        """Rows of `table` whose `column` is one of `values` (all rows without a column); None when the
        table has no partition file. A partition without that column (an empty frame) has no such rows."""
        files = self._files(table)
        if files is None:
            return None
        values = [v for v in values or [] if v is not None]
        if column is not None and not values:
            return []
        frames = []
        for f in files:
            names = pq.read_schema(f).names
            if column is not None and column not in names:
                continue
            filters = [(column, "in", values)] if column is not None else None
            cols = [c for c in columns if c in names] if columns else None
            frames.append(pd.read_parquet(f, columns=cols, filters=filters))
        frames = [f for f in frames if len(f)]
        return [_plain_row(r) for f in frames for r in f.to_dict("records")]

    def pair_ids(self) -> list[str]:
        ids: dict[str, None] = {}
        for table in PAIR_TABLES:
            for row in self.rows(table, columns=["pair_id"]) or []:
                ids[row["pair_id"]] = None
        return list(ids)

    def kept_pairs(self) -> list[dict]:
        """Judged pairs (id, score, kept, instruction), kept ones first, best score first."""
        rows = self.rows("judged_pairs", columns=["pair_id", "judge_score", "kept", "instruction"]) or []
        return sorted(rows, key=lambda r: (not r.get("kept"), -(r.get("judge_score") or 0), r["pair_id"]))

    def catalog(self) -> Rows | None:
        try:
            df = self.warehouse.read_only_query(
                "SELECT * FROM catalog.materializations WHERE asset_key IN "
                f"({', '.join('?' * len(STORY_TABLES))})",
                list(STORY_TABLES),
            )
        except Exception:  # noqa: BLE001 - a catalog that cannot be read is reported as missing, not raised
            return None
        return None if df is None else [_plain_row(r) for r in df.to_dict("records")]

    def story(self, wanted: str) -> Story:
        """The story of the pair with id `wanted` (or the one id it is a prefix of); `UnknownPair` else."""
        pair_id = resolve_pair_id(wanted, self.pair_ids())
        found: dict[str, Rows | None] = {t: self.rows(t, "pair_id", [pair_id]) for t in PAIR_TABLES}
        found["training_corpus"] = self.rows("training_corpus", "pair_id", [pair_id])
        found["document_matches"] = self.rows("document_matches", "match_id", [pair_id])
        # The keys of the joins below, from whichever of these tables has the pair.
        pair = next(
            iter(found["instantiated_pairs"] or found["judged_pairs"] or found["document_matches"] or []), {}
        )
        bank = self.rows("query_templates", "template_id", [pair.get("template_id")])
        text = [r["template"] for r in bank or [] if r.get("template")]
        same = self.rows("query_templates", "template", text) if text else []
        found["query_templates"] = None if bank is None else bank + (same or [])
        query_ids = [pair.get("query_id"), *(r.get("query_id") for r in found["query_templates"] or [])]
        found["user_queries"] = self.rows("user_queries", "query_id", query_ids)
        found["silver_templates"] = self.rows("silver_templates", "query_id", query_ids)
        for table in ("documents", "document_descriptions"):
            found[table] = self.rows(table, "doc_id", [pair.get("doc_id")])
        found["silver_instantiations"] = self.rows("silver_instantiations", "doc_id", [pair.get("doc_id")])
        for table in ARTIFACT_TABLES:
            found[table] = self.rows(table)
        found["teachers"] = [
            {"table": t, "teacher": row["teacher"]}
            for t in TEACHER_TABLES
            for row in (self.rows(t, columns=["teacher"]) or [])[:1]
        ]
        return build_story(pair_id, found, self.catalog(), PAIR_COLUMNS)

    def random_pair(self, seed: int | None = None) -> str:
        """A random kept pair (any pair when none is kept)."""
        kept = [r["pair_id"] for r in self.kept_pairs() if r.get("kept")]
        pool = kept or self.pair_ids()
        if not pool:
            raise UnknownPair(NO_PAIRS)
        return random.Random(seed).choice(pool)


def _plain_row(row: dict) -> dict:
    return {k: _plain(v) for k, v in row.items()}


def _plain(value: object) -> object:
    """numpy/pandas scalars as Python ones, missing values as None (JSON-ready, comparable with ==)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
