"""Write the training corpus as Parquet, JSONL, a Hugging Face `datasets` folder and a dataset card."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fi_resources.logic.dataset_card import dataset_card


def export_corpus(corpus: pd.DataFrame, out_dir: Path, stats: Mapping[str, object]) -> dict[str, str | int]:
    """Files under `out_dir`: data/train.parquet, data/train.jsonl, hf/ (save_to_disk), README.md, stats.json.

    Returns their paths (relative) and byte sizes for metadata.
    """
    import datasets

    if corpus.empty:
        raise ValueError("export_corpus: the corpus is empty")
    out_dir = Path(out_dir)
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    df = corpus.reset_index(drop=True)
    # JSON-friendly dtypes: nullable ints become plain ints/None, so every format holds the same values.
    for col in df.columns:
        if str(df[col].dtype) == "Int64":
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    df.to_parquet(data / "train.parquet", index=False)
    with open(data / "train.jsonl", "w", encoding="utf8") as f:
        for rec in df.to_dict(orient="records"):
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    datasets.Dataset.from_pandas(df, preserve_index=False).save_to_disk(str(out_dir / "hf"))
    sample = df["text"].head(3).tolist()
    (out_dir / "README.md").write_text(dataset_card(stats, list(df.columns), sample), encoding="utf8")
    (out_dir / "stats.json").write_text(json.dumps(dict(stats), indent=2, default=str), encoding="utf8")
    sizes: dict[str, str | int] = {}
    for name in ("data/train.parquet", "data/train.jsonl", "README.md"):
        sizes[f"bytes_{name.split('/')[-1].replace('.', '_')}"] = (out_dir / name).stat().st_size
    sizes["hf_dataset_dir"] = "hf"
    return sizes
