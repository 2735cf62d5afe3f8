"""Gaussian pooling as a sentence-transformers module: 1 global + K local embeddings per text (paper §2).

``sentence_embedding`` stays the global embedding (masked mean, or CLS for a CLS-pooled base), so
``model.encode`` and every stock loss keep working; the K local embeddings are an extra output,
``local_embeddings`` (batch, K, dim). Local k weights token t by ``m_t·exp(-½((t+0.5−c_k)/(σT))²)``,
normalised, with ``c_k = k/(K+1)·T`` and T the sequence's real (unpadded) length; the local vector is
``α·gauss_k + (1−α)·global`` (paper: K=5, σ=0.05, α=1.0 = pure local). The NumPy reference of the same
math is ``fi_resources.logic.pooling`` (the unit tests check both agree).

Long documents: the tokenizer truncates to the encoder's ``max_seq_length`` (256 tokens for MiniLM), so T
and the chunk centres refer to the kept prefix; text past it is not seen by any embedding. The paper's
BGE-M3 reads 8192 tokens, which covers whole web documents.

The module has no weights. Saved models name its class ``fi_resources.pooling.GaussianPooling`` in
``modules.json``; sentence-transformers 6 imports a class outside its own namespace only with
``trust_remote_code=True``, which would also run any other code a folder names. ``load_encoder_model``
instead resolves exactly this class to the one imported here, so our folders load with
``trust_remote_code=False``, and anything else a folder asks to run still needs the user's consent.
"""

from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.module import Module

from fi_resources.logic.pooling import check_params

LOCAL_KEY = "local_embeddings"
GLOBAL_MODES = ("mean", "cls")


class GaussianPooling(Module):
    config_keys = ["embedding_dimension", "num_local", "sigma", "alpha", "global_mode"]

    def __init__(
        self,
        embedding_dimension: int,
        num_local: int = 5,
        sigma: float = 0.05,
        alpha: float = 1.0,
        global_mode: str = "mean",
    ) -> None:
        super().__init__()
        check_params(num_local, sigma, alpha)
        if global_mode not in GLOBAL_MODES:
            raise ValueError(f"global_mode must be one of {GLOBAL_MODES}, got {global_mode!r}")
        self.embedding_dimension = int(embedding_dimension)
        self.num_local = int(num_local)
        self.sigma = float(sigma)
        self.alpha = float(alpha)
        self.global_mode = global_mode

    def weights(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, K, T) Gaussian weights for an attention mask (B, T); rows sum to 1 over the real tokens."""
        m = mask.to(torch.float32)
        lengths = m.sum(-1, keepdim=True).clamp(min=1.0)  # (B, 1)
        pos = (m.cumsum(-1) - 0.5).unsqueeze(1)  # position among real tokens (any padding side)
        rho = torch.arange(1, self.num_local + 1, device=m.device, dtype=torch.float32) / (self.num_local + 1)
        centres = (rho.unsqueeze(0) * lengths).unsqueeze(-1)  # (B, K, 1)
        width = (self.sigma * lengths).unsqueeze(-1)
        w = m.unsqueeze(1) * torch.exp(-0.5 * ((pos - centres) / width) ** 2)
        return w / w.sum(-1, keepdim=True).clamp(min=1e-12)

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        h = features["token_embeddings"]
        mask = features.get("attention_mask")
        if mask is None or mask.shape[-1] != h.shape[1]:
            mask = torch.ones(h.shape[:-1], device=h.device, dtype=torch.int64)
        m = mask.to(h.dtype)
        if self.global_mode == "cls":
            glob = h[torch.arange(h.shape[0], device=h.device), mask.to(torch.int).argmax(dim=1)]
        else:
            glob = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
        local = torch.einsum("bkt,btd->bkd", self.weights(mask).to(h.dtype), h)
        if self.alpha < 1.0:
            local = self.alpha * local + (1.0 - self.alpha) * glob.unsqueeze(1)
        features["sentence_embedding"] = glob
        features[LOCAL_KEY] = local
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)


def find_gaussian_pooling(model: SentenceTransformer) -> GaussianPooling | None:
    return next((m for m in model if isinstance(m, GaussianPooling)), None)


def add_gaussian_pooling(
    model: SentenceTransformer, num_local: int = 5, sigma: float = 0.05, alpha: float = 1.0
) -> SentenceTransformer:
    """Swap the model's Pooling module for GaussianPooling in place (any base encoder with mean or CLS
    pooling); an existing GaussianPooling gets the new parameters."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    for name, module in list(model._modules.items()):
        if isinstance(module, GaussianPooling | Pooling):
            mode = getattr(module, "global_mode", None) or module.pooling_mode
            if mode not in GLOBAL_MODES:
                raise ValueError(f"cannot keep the base model's {mode!r} pooling as the global embedding")
            model._modules[name] = GaussianPooling(
                module.get_embedding_dimension(), num_local, sigma, alpha, global_mode=mode
            )
            return model
    raise ValueError("the model has no Pooling module to replace")


# modules.json `type` of GaussianPooling → the class; nothing else is resolved without the user's consent.
OWN_MODULES = {f"{GaussianPooling.__module__}.{GaussianPooling.__qualname__}": GaussianPooling}


def load_encoder_model(
    path: str, device: str = "cpu", trust_remote_code: bool = False
) -> SentenceTransformer:
    """A saved SentenceTransformer, GaussianPooling allowed without `trust_remote_code` (module docstring)."""
    # The loader sentence-transformers' own trainer uses to reload a model whose module classes are already
    # imported; every other type in modules.json goes through the usual trust_remote_code check.
    return SentenceTransformer._load_with_module_classes(
        path, OWN_MODULES, device=device, trust_remote_code=trust_remote_code
    )


class LocalChunkLoss(torch.nn.Module):
    """Stage-2 loss (paper: "chunk-index labels ... the loss is applied to that chunk's local embedding").

    Inputs: (document, template description[, hard-negative description]) with label k = the chunk (1..K)
    holding the content the template needs. Two cross-entropy terms, at ``scale``·cosine:
    - retrieval: local k of each document against every description in the batch (in-batch negatives plus
      the hard negatives), so the local vector matches its compatible template;
    - locality: the template description against the document's K locals, so chunk k (not a neighbour,
      not a blend of all) is the one that matches, which is what keeps each local vector local.
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0, locality_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.scale = scale
        self.locality_weight = locality_weight

    def forward(self, sentence_features: list[dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        doc = self.model(sentence_features[0])
        if LOCAL_KEY not in doc:
            raise ValueError("LocalChunkLoss needs a model with GaussianPooling")
        locals_ = torch.nn.functional.normalize(doc[LOCAL_KEY], dim=-1)  # (B, K, D)
        rows = torch.arange(locals_.shape[0], device=locals_.device)
        chunk = labels.to(torch.long) - 1
        anchor = locals_[rows, chunk]  # (B, D)
        cands = torch.cat(
            [
                torch.nn.functional.normalize(self.model(f)["sentence_embedding"], dim=-1)
                for f in sentence_features[1:]
            ]
        )
        retrieval = torch.nn.functional.cross_entropy(self.scale * anchor @ cands.T, rows)
        positive = cands[: locals_.shape[0]]
        locality = torch.nn.functional.cross_entropy(
            self.scale * torch.einsum("bkd,bd->bk", locals_, positive), chunk
        )
        return retrieval + self.locality_weight * locality

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "locality_weight": self.locality_weight}
