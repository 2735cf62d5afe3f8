"""Gaussian pooling: the NumPy reference math, the torch module against it, and save/load round trips."""

import numpy as np
import pytest
import torch

from fi_resources.logic.pooling import (
    char_to_token_position,
    chunk_centres,
    gaussian_weights,
    nearest_chunk,
    pool,
    token_positions,
)
from fi_resources.pooling import LOCAL_KEY, GaussianPooling


def test_centres_are_k_over_k_plus_one():
    assert np.allclose(chunk_centres(5), [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])


def test_weights_normalised_and_peak_at_centres():
    mask = np.ones((1, 60))
    w = gaussian_weights(mask, num_local=5, sigma=0.05)
    assert w.shape == (1, 5, 60)
    assert np.allclose(w.sum(-1), 1.0)
    # Token t sits at t + 0.5; centres at 10, 20, ..., 50 → peaks at tokens 9/10, 19/20, ...
    assert [int(np.argmax(w[0, k])) in (c - 1, c) for k, c in enumerate([10, 20, 30, 40, 50])] == [True] * 5
    # Exact form: weight ratio between two tokens follows exp(-½((t−c)/(σT))²).
    t1, t2, c, s = 9.5, 12.5, 10.0, 0.05 * 60
    expect = np.exp(-0.5 * ((t2 - c) / s) ** 2) / np.exp(-0.5 * ((t1 - c) / s) ** 2)
    assert np.isclose(w[0, 0, 12] / w[0, 0, 9], expect)


def test_padding_gets_no_weight_and_does_not_count_towards_length():
    short = gaussian_weights(np.ones((1, 20)), 5, 0.05)
    padded = gaussian_weights(np.concatenate([np.ones((1, 20)), np.zeros((1, 12))], 1), 5, 0.05)
    assert np.allclose(padded[..., 20:], 0.0)
    assert np.allclose(padded[..., :20], short)  # T is the real length, not the padded one
    left = gaussian_weights(np.concatenate([np.zeros((1, 12)), np.ones((1, 20))], 1), 5, 0.05)
    assert np.allclose(left[..., 12:], short)  # positions count real tokens only
    assert np.allclose(token_positions(np.array([[0, 0, 1, 1]]))[0, 2:], [0.5, 1.5])


def test_sigma_is_relative_to_length():
    a = gaussian_weights(np.ones((1, 40)), 3, 0.1)
    b = gaussian_weights(np.ones((1, 80)), 3, 0.1)
    # Same relative shape: the 80-token weights, summed in pairs, match the 40-token ones closely.
    assert np.abs(b.reshape(1, 3, 40, 2).sum(-1) - a).max() < 0.01


def test_alpha_blends_local_with_global():
    rng = np.random.default_rng(0)
    h, mask = rng.normal(size=(2, 30, 4)), np.ones((2, 30))
    g, pure = pool(h, mask, 5, 0.05, 1.0)
    _, half = pool(h, mask, 5, 0.05, 0.5)
    _, none = pool(h, mask, 5, 0.05, 0.0)
    assert np.allclose(g, h.mean(1))
    assert np.allclose(half, 0.5 * pure + 0.5 * g[:, None])
    assert np.allclose(none, np.repeat(g[:, None], 5, 1))


@pytest.mark.parametrize("bad", [dict(num_local=0), dict(sigma=0.0), dict(alpha=1.5)])
def test_bad_parameters_raise(bad):
    args = dict(num_local=5, sigma=0.05, alpha=1.0) | bad
    with pytest.raises(ValueError):
        pool(np.zeros((1, 3, 2)), np.ones((1, 3)), **args)
    with pytest.raises(ValueError):
        GaussianPooling(2, **args)


def test_empty_sequence_raises():
    with pytest.raises(ValueError, match="real token"):
        gaussian_weights(np.zeros((1, 5)), 5, 0.05)


def test_nearest_chunk_and_char_to_token():
    assert [nearest_chunk(r, 5) for r in (0.0, 0.2, 0.5, 0.74, 1.0)] == [1, 1, 3, 4, 5]
    with pytest.raises(ValueError):
        nearest_chunk(1.2, 5)
    offsets = [(0, 0), (0, 5), (6, 11), (12, 15), (0, 0)]
    assert char_to_token_position(offsets, 7) == 2
    assert char_to_token_position(offsets, 5) == 2  # the space before a token maps to that token
    assert char_to_token_position(offsets, 40) is None  # past the truncated text


def test_torch_module_matches_reference_with_padding():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(3, 25, 8)).astype(np.float32)
    mask = np.ones((3, 25), dtype=np.int64)
    mask[1, 17:] = 0
    mask[2, 9:] = 0
    mod = GaussianPooling(8, num_local=5, sigma=0.05, alpha=0.7)
    out = mod({"token_embeddings": torch.tensor(h), "attention_mask": torch.tensor(mask)})
    assert out["sentence_embedding"].shape == (3, 8) and out[LOCAL_KEY].shape == (3, 5, 8)
    for b in range(3):
        n = int(mask[b].sum())
        g, loc = pool(h[b : b + 1, :n], np.ones((1, n)), 5, 0.05, 0.7)
        assert np.allclose(out["sentence_embedding"][b].numpy(), g[0], atol=1e-5)
        assert np.allclose(out[LOCAL_KEY][b].numpy(), loc[0], atol=1e-5)
    # Changing a padded token changes nothing.
    h2 = h.copy()
    h2[2, 20] += 100
    out2 = mod({"token_embeddings": torch.tensor(h2), "attention_mask": torch.tensor(mask)})
    assert torch.allclose(out2[LOCAL_KEY][2], out[LOCAL_KEY][2])
