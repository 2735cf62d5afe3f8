"""Gaussian pooling math (paper §2) and chunk-index labels, in NumPy: the reference the torch module matches.

For a sequence of real (unpadded) length T, token t sits at position t + 0.5 (the middle of its slot, so
the centres are symmetric), local k = 1..K is centred at c_k = k/(K+1)·T and has standard deviation σ·T.
Weights are ``m_t·exp(-½((t+0.5−c_k)/(σT))²)`` normalised over t. Padding (m_t = 0) gets weight 0 and does
not count towards T.
"""

from __future__ import annotations

import numpy as np


def check_params(num_local: int, sigma: float, alpha: float) -> None:
    if num_local < 1:
        raise ValueError(f"num_local must be >= 1, got {num_local}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (a share of the sequence length), got {sigma}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def chunk_centres(num_local: int) -> np.ndarray:
    """Relative centres ρ_k = k/(K+1), k = 1..K."""
    return np.arange(1, num_local + 1, dtype=np.float64) / (num_local + 1)


def token_positions(mask: np.ndarray) -> np.ndarray:
    """Position of each real token among the real tokens of its row (left or right padding), + 0.5."""
    mask = np.asarray(mask, dtype=np.float64)
    return np.cumsum(mask, axis=-1) - 0.5


def gaussian_weights(mask: np.ndarray, num_local: int, sigma: float) -> np.ndarray:
    """Weights (B, K, T) for an attention mask (B, T); each (b, k) row sums to 1 over the real tokens."""
    check_params(num_local, sigma, 1.0)
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (batch, tokens), got shape {mask.shape}")
    lengths = mask.sum(-1, keepdims=True)  # (B, 1)
    if (lengths <= 0).any():
        raise ValueError("every sequence needs at least one real token")
    pos = token_positions(mask)[:, None, :]  # (B, 1, T)
    centres = chunk_centres(num_local)[None, :, None] * lengths[:, :, None]  # (B, K, 1)
    width = sigma * lengths[:, :, None]
    w = mask[:, None, :] * np.exp(-0.5 * ((pos - centres) / width) ** 2)
    return w / w.sum(-1, keepdims=True)


def pool(
    token_embeddings: np.ndarray, mask: np.ndarray, num_local: int, sigma: float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """(global (B, D), locals (B, K, D)): masked mean, and α·gauss_k + (1−α)·global (not normalised)."""
    check_params(num_local, sigma, alpha)
    mask = np.asarray(mask, dtype=np.float64)
    h = np.asarray(token_embeddings, dtype=np.float64)
    glob = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    local = np.einsum("bkt,btd->bkd", gaussian_weights(mask, num_local, sigma), h)
    return glob, alpha * local + (1 - alpha) * glob[:, None, :]


def nearest_chunk(relative_position: float, num_local: int) -> int:
    """Chunk index k (1..K) whose centre k/(K+1) is nearest a relative position in [0, 1]."""
    if not 0.0 <= relative_position <= 1.0:
        raise ValueError(f"relative position must lie in [0, 1], got {relative_position}")
    return int(np.argmin(np.abs(chunk_centres(num_local) - relative_position))) + 1


def char_to_token_position(offsets: list[tuple[int, int]], char: int) -> int | None:
    """Index of the token whose character span holds ``char`` (or the first token starting after it), given
    a fast tokenizer's offsets for the real tokens (specials have (0, 0)). None when the text was truncated
    before ``char``."""
    best = None
    for i, (start, end) in enumerate(offsets):
        if start == end:  # special token
            continue
        if start <= char < end:
            return i
        if start > char and best is None:
            best = i
    return best
