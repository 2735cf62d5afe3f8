"""Excerpt markup as single tokens of the student, and the teacher's widened answer spans."""

import torch

from fi_resources.lm import CausalLM, materialize_tiny_lm
from fi_resources.logic.excerpts import ELLIPSIS, EXCERPT_CLOSE, EXCERPT_OPEN, widen_to_sentences

MARKUP = (EXCERPT_OPEN, ELLIPSIS, EXCERPT_CLOSE)
ANSWER = " <excerpt>Paris is the<...>on the Seine.</excerpt> Also <excerpt>It rains</excerpt>"


def test_markup_becomes_single_tokens_that_decode_back_and_survive_saving(model_cache, tmp_path):
    lm = CausalLM(materialize_tiny_lm(model_cache / "tiny-llama"))
    pieces = {t: lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in MARKUP}
    before = len(lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    assert lm.add_tokens(MARKUP) == 3
    assert lm.add_tokens(MARKUP) == 0  # idempotent
    ids = lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    one = {t: lm.tokenizer.convert_tokens_to_ids(t) for t in MARKUP}
    assert [ids.count(one[t]) for t in MARKUP] == [2, 1, 2]
    assert len(ids) <= before - 2 * 5  # each markup string was 3-4 tokens, now 1
    assert lm.tokenizer.decode(ids, skip_special_tokens=True) == ANSWER
    emb = lm.model.get_input_embeddings().weight
    new_id = lm.tokenizer.convert_tokens_to_ids(EXCERPT_OPEN)
    assert torch.allclose(emb[new_id], emb[pieces[EXCERPT_OPEN]].mean(0))
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = CausalLM(tmp_path)
    assert again.tokenizer(ANSWER, add_special_tokens=False)["input_ids"] == ids
    assert again.generate(["Quote it: " + EXCERPT_OPEN], max_new_tokens=3)  # loads and decodes


def test_widen_to_sentences_takes_following_sentences_within_the_limit():
    sentences = [(0, 10), (11, 30), (31, 80), (81, 90)]
    assert widen_to_sentences(sentences, 0, 10, max_chars=30) == (0, 30)
    assert widen_to_sentences(sentences, 0, 10, max_chars=200) == (0, 90)
    assert widen_to_sentences(sentences, 11, 30, max_chars=25) == (11, 30)  # next one would overflow
    assert widen_to_sentences(sentences, 81, 90, max_chars=5) == (81, 90)  # never shrinks
