"""GaussianPooling inside a real (tiny random) SentenceTransformer: swap, encode, save/load, train."""

import numpy as np
import pytest

from fi_resources.encoder import Encoder, materialize_tiny_encoder
from fi_resources.pooling import GaussianPooling, add_gaussian_pooling


@pytest.fixture(scope="module")
def tiny_path(model_cache):
    return materialize_tiny_encoder(model_cache / "tiny-encoder")


def test_swap_keeps_global_embedding_and_adds_locals(tiny_path):
    enc = Encoder(tiny_path)
    texts = ["short text", "a considerably longer text with many more words in it than the first one"]
    before = enc.encode(texts)
    enc.with_gaussian_pooling(num_local=4, sigma=0.1)
    multi = enc.encode_multi(texts, batch_size=2)
    assert multi.shape == (2, 5, enc.dim)
    assert np.allclose(np.linalg.norm(multi, axis=-1), 1.0, atol=1e-5)
    assert np.allclose(multi[:, 0], before, atol=1e-5)  # global = the old mean pooling
    assert np.allclose(enc.encode(texts), before, atol=1e-5)  # encode() still works
    # Batch padding does not change a text's embeddings.
    alone = enc.encode_multi(texts[:1])
    assert np.allclose(alone[0], multi[0], atol=1e-5)


def test_save_load_round_trip(tiny_path, tmp_path):
    enc = Encoder(tiny_path).with_gaussian_pooling(num_local=3, sigma=0.07, alpha=0.5)
    enc.model.save(str(tmp_path / "m"))
    again = Encoder(tmp_path / "m")
    gp = next(m for m in again.model if isinstance(m, GaussianPooling))
    assert (gp.num_local, gp.sigma, gp.alpha) == (3, 0.07, 0.5)
    text = ["The quick brown fox jumps over the lazy dog near the river bank."]
    assert np.allclose(again.encode_multi(text), enc.encode_multi(text), atol=1e-6)


def test_encode_multi_without_gaussian_pooling_fails_clearly(tiny_path):
    with pytest.raises(ValueError, match="GaussianPooling"):
        Encoder(tiny_path).encode_multi(["x"])


def test_swap_refuses_a_pooling_it_cannot_keep(tiny_path):
    from sentence_transformers.sentence_transformer.modules import Pooling

    enc = Encoder(tiny_path)
    enc.model._modules["1"] = Pooling(enc.dim, "max")
    with pytest.raises(ValueError, match="max"):
        add_gaussian_pooling(enc.model)


def test_long_text_is_truncated_to_max_seq_length(tiny_path):
    enc = Encoder(tiny_path).with_gaussian_pooling()
    offsets = enc.token_offsets("word " * 2000)
    assert len(offsets) == enc.max_seq_length
    assert enc.encode_multi(["word " * 2000]).shape == (1, 6, enc.dim)


def test_chunk_label_training_moves_the_labelled_local(tiny_path, tmp_path):
    enc = Encoder(tiny_path).with_gaussian_pooling(num_local=5)
    doc = "alpha beta gamma delta. " * 8 + "zebra giraffe lion tiger. " * 4 + "omega sigma tau. " * 8
    positive = "zebra giraffe lion tiger"
    before = enc.encode_multi([doc])[0] @ enc.encode([positive])[0]
    stats = enc.finetune(
        [doc] * 8, [positive] * 8, ["alpha beta gamma"] * 8, tmp_path / "out",
        epochs=3, batch_size=4, lr=1e-3, chunk_labels=[3] * 8,
    )  # fmt: skip
    after = Encoder(tmp_path / "out").encode_multi([doc])[0] @ enc.encode([positive])[0]
    assert stats["pairs"] == 8
    assert after[3] > before[3]  # local 3 (index 3 = k=3) moved towards the positive
    with pytest.raises(ValueError, match="1..5"):
        enc.finetune([doc], [positive], [positive], tmp_path / "x", chunk_labels=[6])
