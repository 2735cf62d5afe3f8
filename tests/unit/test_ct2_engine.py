"""The CTranslate2 student engine (`fi_resources.lm.ct2`) on the tiny random Llama: conversion cached, greedy
output against the torch fp32 loop, the setting that chooses it, and the response-cache key."""

import shutil
from pathlib import Path

import pytest

from fi_resources.backends import LocalBackend
from fi_resources.cache import CachedBackend, ResponseCache
from fi_resources.lm import CausalLM, materialize_tiny_lm
from fi_resources.lm.ct2 import CT2LM, conversion_dir
from fi_resources.models import Endpoints, ModelStore, Parts
from fi_resources.profiles import TINY_RANDOM_ENCODER, TINY_RANDOM_LM, get_profile
from fi_resources.stages import backend_stats

PROMPTS = [
    "The",
    "A short one.",
    "Write one question that this text answers. Text: rivers flow into the sea, mostly.",
    "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "Question: who wrote the book?",
    "Paris is the capital of France and its largest city by far, on the Seine.",
    "x",
    "Instruction: rewrite the following sentence in the passive voice: the cat ate the fish.",
]


@pytest.fixture(scope="module")
def tiny(model_cache) -> Path:
    return materialize_tiny_lm(model_cache / "tiny-llama")


@pytest.fixture(scope="module")
def torch_lm(tiny) -> CausalLM:
    return CausalLM(tiny)


def test_conversion_is_cached_and_keyed_by_compute_type_and_content(tiny, tmp_path) -> None:
    first = CT2LM(tiny, tmp_path, "int8")
    assert first.converted_now and (first.converted / "model.bin").exists()
    again = CT2LM(tiny, tmp_path, "int8")
    assert not again.converted_now and again.converted == first.converted
    assert not list(first.converted.parent.glob("*.tmp-*"))  # written to a temp folder, then renamed
    assert conversion_dir(tiny, tmp_path, "float32") != first.converted
    # A student retrained at the same path (other weights) must not reuse the old conversion.
    copy = tmp_path / "student"
    shutil.copytree(tiny, copy)
    before = conversion_dir(copy, tmp_path, "int8")
    with open(copy / "config.json", "a", encoding="utf8") as f:
        f.write("\n")
    assert conversion_dir(copy, tmp_path, "int8") != before


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_float32_greedy_equals_the_torch_fp32_loop(tiny, torch_lm, tmp_path_factory, batch_size) -> None:
    # float32 conversion, no quantisation: the same greedy tokens are expected (measured identical on SmolLM2
    # too); int8 changes the weights, so it is only checked for shape below.
    ct2 = CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-f32", "float32")
    ids = [torch_lm.tokenizer(p)["input_ids"] for p in PROMPTS]
    eos = torch_lm._eos_ids
    ref = [[t for t in row if t not in eos] for row in torch_lm.greedy_token_ids(ids, 12, batch_size)]
    assert ct2.token_ids(ids, 12, batch_size) == ref
    assert ct2.generate(PROMPTS, max_new_tokens=12, batch_size=batch_size) == torch_lm.generate(
        PROMPTS, max_new_tokens=12, batch_size=batch_size
    )


def test_int8_respects_max_new_tokens_and_stop(tiny, torch_lm, tmp_path_factory) -> None:
    ct2 = CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-int8", "int8")
    ids = [torch_lm.tokenizer(p)["input_ids"] for p in PROMPTS]
    rows = ct2.token_ids(ids, 7, 4)
    assert len(rows) == len(PROMPTS) and all(0 < len(r) <= 7 for r in rows)
    free = ct2.generate(PROMPTS, max_new_tokens=20)
    # A stop string the free outputs contain: cut before it, as the torch loop does.
    text = next(t for t in free if len(t.strip()) > 3)
    stop = text.strip()[1:3]
    cut = ct2.generate(PROMPTS, max_new_tokens=20, stop=stop)
    assert cut == [t.split(stop)[0] for t in free]
    seen: list[int] = []
    ct2.generate(PROMPTS, max_new_tokens=5, progress=lambda done, n, s: seen.append(done))
    assert seen == list(range(1, len(PROMPTS) + 1))
    with pytest.raises(ValueError):
        ct2.generate(PROMPTS, max_new_tokens=0)


def test_copy_constrained_calls_fall_back_to_torch(tiny, torch_lm, tmp_path_factory) -> None:
    ct2 = CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-int8", "int8", torch_lm=lambda: torch_lm)
    sources = ["rivers flow into the sea, mostly."] * 2
    prompts = [f"Text: {sources[0]}\nAnswer with an <excerpt>", "The"]
    want = torch_lm.generate(prompts, max_new_tokens=10, copy_sources=sources)
    assert ct2.generate(prompts, max_new_tokens=10, copy_sources=sources) == want
    assert ct2.torch_fallback_prompts == 2
    meta = backend_stats(LocalBackend(ct2))
    assert meta["engine"] == "ctranslate2-int8" and meta["torch_fallback_prompts"] == 2
    with pytest.raises(ValueError, match="logits processor"):
        CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-int8", "int8").generate(
            prompts, copy_sources=sources
        )


def _parts(cache: Path, engine: str) -> Parts:
    store = ModelStore(TINY_RANDOM_LM, TINY_RANDOM_ENCODER, cache, student_engine=engine)
    return Parts(get_profile("tiny"), store, Endpoints(), {}, None)


def test_the_setting_chooses_the_engine(tiny, model_cache) -> None:
    student = str(tiny)  # any HF folder stands in for a fine-tuned student artifact
    torch_backend = _parts(model_cache, "torch").backend("genericizer", student)
    ct2_backend = _parts(model_cache, "ctranslate2").backend("instantiator", student)
    assert isinstance(torch_backend.lm, CausalLM) and torch_backend.engine == "torch"
    assert isinstance(ct2_backend.lm, CT2LM) and ct2_backend.engine == "ctranslate2-int8"
    # Only the students: the teacher keeps the torch model.
    assert isinstance(_parts(model_cache, "ctranslate2").backend("teacher").lm, CausalLM)
    with pytest.raises(ValueError, match="student_engine"):
        ModelStore(TINY_RANDOM_LM, TINY_RANDOM_ENCODER, model_cache, student_engine="onnx")
    with pytest.raises(ValueError, match="student_compute_type"):
        ModelStore(TINY_RANDOM_LM, TINY_RANDOM_ENCODER, model_cache, student_compute_type="bf16")


def test_models_resource_reads_the_engine_and_fingerprints_it(tmp_path, monkeypatch) -> None:
    from fi_resources.resources import ModelsResource, WarehouseResource

    warehouse = WarehouseResource(home=str(tmp_path))
    default = ModelsResource(profile="tiny", warehouse=warehouse)
    assert default.parts().store.student_engine == "torch"
    assert "student_engine" not in default.fingerprint()  # code versions unchanged at the default
    chosen = ModelsResource(profile="tiny", warehouse=warehouse, student_engine="ctranslate2")
    assert chosen.fingerprint()["student_engine"] == "ctranslate2-int8"
    monkeypatch.setenv("FI_STUDENT_ENGINE", "ctranslate2")
    monkeypatch.setenv("FI_STUDENT_COMPUTE_TYPE", "int8_float32")
    store = ModelsResource(profile="tiny", warehouse=warehouse).parts().store
    assert (store.student_engine, store.student_compute_type) == ("ctranslate2", "int8_float32")


def test_cache_key_differs_by_engine(tiny, torch_lm, tmp_path_factory, tmp_path) -> None:
    cache = ResponseCache(tmp_path / "responses.sqlite")
    int8 = CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-int8", "int8")
    f32 = CT2LM(tiny, tmp_path_factory.getbasetemp() / "ct2-f32", "float32")
    idents = [CachedBackend(LocalBackend(lm), cache).identity() for lm in (torch_lm, int8, f32)]
    keys = {cache.key(ident, "The", {"max_new_tokens": 8, "stop": None}) for ident in idents}
    assert len(keys) == 3
    assert "engine" not in idents[0]  # the torch key is what it was before engines existed
