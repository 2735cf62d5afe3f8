"""Student fine-tuning through accelerate: bf16 mixed precision trains and saves fp32 weights on the CPU,
fp32 is unchanged by the accelerate path, and bad choices are refused before any training."""

import pytest
import torch
from safetensors.torch import load_file

from fi_resources.lm import CausalLM, materialize_tiny_lm
from fi_resources.settings import StudentSettings

EXAMPLES = [(f"Query: item {i}\nTemplate JSON:", f" answer number {i % 3}") for i in range(12)]


@pytest.fixture(scope="module")
def base(model_cache):
    return materialize_tiny_lm(model_cache / "tiny-llama")


def _train(base, out, **kwargs) -> tuple[CausalLM, dict]:
    lm = CausalLM(base)
    stats = lm.finetune(EXAMPLES, out, epochs=3, lr=5e-3, batch_size=4, **kwargs)
    return lm, stats


def test_bf16_trains_and_saves_fp32_weights_on_the_cpu(base, tmp_path) -> None:
    lm, stats = _train(base, tmp_path / "bf16", precision="bf16", device="cpu")
    assert stats["precision"] == "bf16" and stats["device"] == "cpu"
    assert stats["final_loss"] < stats["first_loss"]
    saved = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in lm.model.parameters())
    # Mixed precision really ran: its weights differ from an fp32 run's on the same examples and seed.
    _, fp32_stats = _train(base, tmp_path / "fp32", precision="fp32", device="cpu")
    fp32 = load_file(str(tmp_path / "fp32" / "model.safetensors"))
    assert any(not torch.equal(saved[k], fp32[k]) for k in saved)
    assert fp32_stats["first_loss"] != stats["first_loss"]
    # The folder loads and generates like any other student.
    assert CausalLM(tmp_path / "bf16").generate(["Query: item 1\nTemplate JSON:"], max_new_tokens=3)


def test_precisions_alternate_in_one_process(base, tmp_path) -> None:
    # accelerate keeps process-wide state; each fine-tune sets its own.
    first = _train(base, tmp_path / "a", precision="fp32", device="cpu")[1]
    _train(base, tmp_path / "b", precision="bf16", device="cpu")
    again = _train(base, tmp_path / "c", precision="fp32", device="auto")[1]
    assert again["final_loss"] == first["final_loss"], "same seed, same fp32 training, same result"
    a, c = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("a", "c"))
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(precision="fp16"), "precision must be one of"),
        (dict(device="tpu"), "device must be one of"),
        pytest.param(
            dict(device="cuda"),
            "torch sees no GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_choices_are_refused(base, tmp_path, kwargs, message) -> None:
    lm = CausalLM(base)
    with pytest.raises(ValueError, match=message):
        lm.finetune(EXAMPLES[:2], tmp_path / "out", lora_rank=2, **kwargs)
    assert not (tmp_path / "out").exists()
    # Refused before the model was touched: no adapters injected, nothing frozen.
    assert not any("lora" in name for name, _ in lm.model.named_parameters())
    assert all(p.requires_grad for p in lm.model.parameters())


def test_defaults_keep_the_students_code_version() -> None:
    # Added at their defaults, the new settings leave every student's fingerprint as it was.
    assert "student_precision" not in StudentSettings().fingerprint()
    assert "student_device" not in StudentSettings().fingerprint()
    assert StudentSettings(student_precision="bf16").fingerprint()["student_precision"] == "bf16"
