"""LoRA fine-tuning on the tiny random Llama: only adapters train, and they are merged before saving."""

import pytest
import torch
from safetensors.torch import load_file

from fi_resources.lm import CausalLM, materialize_tiny_lm

EXAMPLES = [(f"Query: item {i}\nTemplate JSON:", f" answer number {i % 3}") for i in range(12)]


@pytest.fixture(scope="module")
def base(model_cache):
    return materialize_tiny_lm(model_cache / "tiny-llama")


def test_lora_trains_adapters_and_saves_merged_weights(base, tmp_path) -> None:
    before = load_file(str(base / "model.safetensors"))
    lm = CausalLM(base)
    full_params = sum(p.numel() for p in lm.model.parameters())
    stats = lm.finetune(EXAMPLES, tmp_path / "out", epochs=3, lr=5e-3, batch_size=4, lora_rank=4)
    assert stats["lora_rank"] == 4
    assert 0 < stats["trained_parameters"] < full_params / 4
    assert stats["final_loss"] < stats["first_loss"]
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(saved) == set(before), "merged model must have exactly the base model's tensors (no lora_*)"
    changed = {k for k in saved if not torch.equal(saved[k], before[k])}
    assert any("q_proj" in k for k in changed) and any("down_proj" in k for k in changed)
    assert not any("embed" in k or "norm" in k for k in changed), "LoRA must leave other weights untouched"
    # The folder loads like a full fine-tune and generates; the in-memory model is the merged one too.
    reloaded = CausalLM(tmp_path / "out")
    assert reloaded.generate(["Query: item 1\nTemplate JSON:"], max_new_tokens=4) == lm.generate(
        ["Query: item 1\nTemplate JSON:"], max_new_tokens=4
    )
    assert not any("lora" in n for n, _ in lm.model.named_parameters())


def test_lora_on_top_layers_only(base, tmp_path) -> None:
    before = load_file(str(base / "model.safetensors"))
    lm = CausalLM(base)
    lm.finetune(
        EXAMPLES[:4], tmp_path / "out", epochs=1, lr=5e-3, batch_size=4, lora_rank=2, train_top_layers=0.5
    )
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    changed = {k for k in saved if not torch.equal(saved[k], before[k])}
    assert changed and all(".layers.1." in k for k in changed)


def test_bad_lora_rank(base, tmp_path) -> None:
    with pytest.raises(ValueError, match="lora_rank"):
        CausalLM(base).finetune(EXAMPLES[:2], tmp_path / "out", lora_rank=-1)
