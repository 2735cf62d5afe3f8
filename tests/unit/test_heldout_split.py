"""The retrieval held-out split puts all passages of one source document on the same side."""

import numpy as np
import pandas as pd

from fi_resources.parts import CompatibilityLabel
from fi_resources.settings import RetrievalSettings
from fi_resources.stages.retrieval import label_pairs


class RandomEncoder:
    def encode(self, texts):
        v = np.random.default_rng(len(texts)).normal(size=(len(texts), 8))
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class YesLabeler:
    name = "yes"

    def label_compatibility(self, template, title, text):
        return CompatibilityLabel(True, "ok", 0, 4)


def test_passages_of_one_source_share_a_split():
    sources = [f"src{i}" for i in range(12)]
    docs = pd.DataFrame(
        [
            {"doc_id": f"{s}#{k}", "source_doc_id": s, "title": s, "text": f"text {s} {k}"}
            for s in sources
            for k in range(3)
        ]
    )
    descriptions = pd.DataFrame({"doc_id": docs["doc_id"], "description": "about " + docs["title"]})
    bank = pd.DataFrame(
        {
            "template_id": ["t1", "t2"],
            "template": ["What is <fi>a thing</fi>?", "Who is <fi>a person</fi>?"],
            "compatible_document_description": ["a thing", "a person"],
        }
    )
    settings = RetrievalSettings(embedder_top_k=2, heldout_fraction=0.25)
    df = label_pairs(docs, descriptions, bank, RandomEncoder(), YesLabeler(), settings).value
    split_of = df.merge(docs[["doc_id", "source_doc_id"]], on="doc_id").groupby("source_doc_id")["split"]
    assert (split_of.nunique() == 1).all()
    assert split_of.first().value_counts().to_dict() == {"train": 9, "heldout": 3}
