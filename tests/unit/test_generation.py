"""The decode loop against transformers' one-at-a-time greedy `generate`, on the tiny random Llama."""

import pytest
import torch

from fi_resources.lm import CausalLM, _chunks, materialize_tiny_lm

PROMPTS = [
    "The",
    "A short one.",
    "Write one question that this text answers. Text: rivers flow into the sea, mostly.",
    "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "Question: who wrote the book?",
    "Paris is the capital of France and its largest city by far, on the Seine.",
    "x",
    "Tell me about cats and dogs and why they fight.",
    "Instruction: rewrite the following sentence in the passive voice: the cat ate the fish.",
    "ok",
]


@pytest.fixture(scope="module")
def lm(model_cache) -> CausalLM:
    return CausalLM(materialize_tiny_lm(model_cache / "tiny-llama"))


def one_at_a_time(lm: CausalLM, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    out = []
    for p in prompts:
        enc = lm.tokenizer(p, return_tensors="pt")
        gen = lm.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id
        )
        out.append(gen[0, enc["input_ids"].shape[1] :].tolist())
    return out


def ids_of(lm: CausalLM, prompts: list[str]) -> list[list[int]]:
    return [lm.tokenizer(p)["input_ids"] for p in prompts]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_loop_matches_one_at_a_time_generate(lm: CausalLM, batch_size: int) -> None:
    # batch 3 < 10 prompts: rows are refilled, merged with left padding and compacted mid-decode.
    ref = one_at_a_time(lm, PROMPTS, 12)
    got = lm.greedy_token_ids(
        ids_of(lm, PROMPTS), max_new_tokens=12, batch_size=batch_size, prefill_tokens=64
    )
    assert got == ref


def test_eos_ends_rows_at_different_steps(lm: CausalLM) -> None:
    full = lm.greedy_token_ids(ids_of(lm, PROMPTS), max_new_tokens=10, batch_size=4)
    # Make a token the model emits mid-way in some rows an EOS token, so rows finish at different steps.
    counts: dict[int, int] = {}
    for row in full:
        for t in row[1:6]:
            counts[t] = counts.get(t, 0) + 1
    extra_eos = max(counts, key=counts.get)
    old = lm.model.generation_config.eos_token_id
    lm.model.generation_config.eos_token_id = [old, extra_eos]
    try:
        ref = one_at_a_time(lm, PROMPTS, 10)
        got = lm.greedy_token_ids(ids_of(lm, PROMPTS), max_new_tokens=10, batch_size=4)
        ref = [r[: r.index(extra_eos) + 1] if extra_eos in r else r for r in ref]  # generate pads after EOS
        assert got == ref
        assert any(len(r) < 10 for r in got), "the chosen EOS token should end at least one row early"
        assert all(r[-1] == extra_eos or len(r) == 10 for r in got)
    finally:
        lm.model.generation_config.eos_token_id = old


def test_generate_text_same_for_both_engines(lm: CausalLM) -> None:
    ours = lm.generate(PROMPTS, max_new_tokens=8, batch_size=4)
    hf = lm.generate(PROMPTS, max_new_tokens=8, batch_size=4, engine="hf")
    assert ours == hf
    assert lm.stats.prompts == 2 * len(PROMPTS)


def test_stop_string_cuts_and_stops_decoding_early(lm: CausalLM) -> None:
    before = lm.stats.new_tokens
    full = lm.generate(PROMPTS, max_new_tokens=16, batch_size=4)
    full_decoded = lm.stats.new_tokens - before
    # A stop string taken from the middle of one completion: that row must stop decoding early.
    donor = max(full, key=len)
    stop = donor[len(donor) // 2 : len(donor) // 2 + 2]
    assert stop.strip(), "need a visible stop string"
    before = lm.stats.new_tokens
    cut = lm.generate(PROMPTS, max_new_tokens=16, batch_size=4, stop=stop)
    decoded = lm.stats.new_tokens - before
    assert cut == [t.split(stop)[0] for t in full]
    assert decoded < full_decoded


def test_empty_and_bad_input(lm: CausalLM) -> None:
    assert lm.generate([], max_new_tokens=4) == []
    with pytest.raises(ValueError, match="tokenise to nothing"):
        lm.generate(["fine", ""], max_new_tokens=4)
    with pytest.raises(ValueError):
        lm.generate(["fine"], max_new_tokens=0)
    with pytest.raises(ValueError):
        lm.generate(["fine"], engine="vllm")
    assert (
        lm.generate(["fine"], max_new_tokens=1, batch_size=1)[0]
        == lm.generate(["fine"], max_new_tokens=1, engine="hf")[0]
    )


def test_chunks_respect_the_padded_token_budget() -> None:
    lengths = [3, 3, 4, 10, 11, 30]
    chunks = _chunks(list(range(6)), lengths, budget=24)
    assert [r for c in chunks for r in c] == list(range(6))
    for c in chunks:
        assert len(c) == 1 or len(c) * max(lengths[r] for r in c) <= 24
    assert chunks == [[0, 1, 2], [3, 4], [5]]


def test_no_grad_state_leaks(lm: CausalLM) -> None:
    lm.generate(["hello"], max_new_tokens=2)
    assert not torch.is_inference_mode_enabled()
