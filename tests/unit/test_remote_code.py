"""`trust_remote_code` is off unless a user asks for it: a user-named model folder that ships its own code (a
sentence-transformers module, a transformers architecture) is refused with the fix and its code never runs;
with the setting on it loads. Our own Gaussian-pooled encoders load with the default."""

import json
import shutil
from pathlib import Path

import pytest
import transformers.dynamic_module_utils as dynamic_modules

from fi_resources.encoder import Encoder, materialize_tiny_encoder
from fi_resources.lm import materialize_tiny_lm
from fi_resources.models import ModelStore
from fi_resources.resources import ModelsResource, WarehouseResource

# The folder's own code leaves this file next to itself when it is imported: proof it ran (or did not).
MARK = "from pathlib import Path\nPath(__file__).with_name('ran.txt').write_text('ran')\n"


@pytest.fixture(autouse=True)
def private_modules_cache(tmp_path, monkeypatch):
    """Trusted code is copied into transformers' modules cache: one per test, not the user's."""
    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.delenv("FI_TRUST_REMOTE_CODE", raising=False)


def ran(folder: Path, tmp_path: Path) -> bool:
    return (folder / "ran.txt").exists() or any((tmp_path / "hf-modules").rglob("ran.txt"))


@pytest.fixture
def encoder_with_code(model_cache, tmp_path) -> Path:
    """The tiny encoder, its Pooling module replaced by a class defined in a file of the folder."""
    folder = tmp_path / "custom-encoder"
    shutil.copytree(materialize_tiny_encoder(model_cache / "tiny-encoder"), folder)
    (folder / "custom_pooling.py").write_text(
        MARK + "from sentence_transformers.sentence_transformer.modules import Pooling\n\n\n"
        "class CustomPooling(Pooling):\n    pass\n"
    )
    modules = json.loads((folder / "modules.json").read_text())
    pooling = next(m for m in modules if m["type"].endswith(".Pooling"))
    pooling["type"] = "custom_pooling.CustomPooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


@pytest.fixture
def lm_with_code(model_cache, tmp_path) -> Path:
    """The tiny Llama under a model type no installed package knows, its classes in files of the folder."""
    folder = tmp_path / "custom-lm"
    shutil.copytree(materialize_tiny_lm(model_cache / "tiny-llama"), folder)
    (folder / "modeling_tiny.py").write_text(
        MARK + "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class TinyConfig(LlamaConfig):\n    model_type = 'tiny-custom'\n\n\n"
        "class TinyForCausalLM(LlamaForCausalLM):\n    config_class = TinyConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "tiny-custom"
    config["architectures"] = ["TinyForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "modeling_tiny.TinyConfig",
        "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def models(tmp_path: Path, **fields: object) -> ModelStore:
    resource = ModelsResource(
        profile="tiny", warehouse=WarehouseResource(home=str(tmp_path / "fi")), **fields
    )
    return resource.parts().store


def test_off_by_default(tmp_path):
    assert models(tmp_path).trust_remote_code is False


def test_an_encoder_with_its_own_module_is_refused_unless_trusted(encoder_with_code, tmp_path):
    with pytest.raises(RuntimeError, match="trust_remote_code: true") as refused:
        models(tmp_path).encoder(encoder_with_code)
    assert "FI_TRUST_REMOTE_CODE=1" in str(refused.value)
    assert not ran(encoder_with_code, tmp_path)
    enc = models(tmp_path, trust_remote_code=True).encoder(encoder_with_code)
    assert type(enc.model[1]).__name__ == "CustomPooling"
    assert enc.encode(["a harbour town"]).shape == (1, enc.dim)
    assert ran(encoder_with_code, tmp_path)


def test_a_language_model_with_its_own_architecture_is_refused_unless_trusted(
    lm_with_code, tmp_path, monkeypatch
):
    with pytest.raises(RuntimeError, match="trust_remote_code: true"):
        models(tmp_path, student_base=str(lm_with_code)).lm()
    assert not ran(lm_with_code, tmp_path)
    monkeypatch.setenv("FI_TRUST_REMOTE_CODE", "1")  # the environment's way to ask for it
    lm = models(tmp_path, student_base=str(lm_with_code)).lm()
    assert type(lm.model).__name__ == "TinyForCausalLM"
    assert ran(lm_with_code, tmp_path)


def test_our_gaussian_encoder_loads_without_trusting_code(model_cache, tmp_path):
    enc = Encoder(materialize_tiny_encoder(model_cache / "tiny-encoder")).with_gaussian_pooling(num_local=3)
    enc.model.save(str(tmp_path / "gaussian"))
    modules = json.loads((tmp_path / "gaussian" / "modules.json").read_text())
    assert "fi_resources.pooling.GaussianPooling" in [m["type"] for m in modules]
    again = models(tmp_path).encoder(tmp_path / "gaussian")
    assert again.model.trust_remote_code is False
    assert again.num_local == 3
    assert again.encode_multi(["a harbour town"]).shape == (1, 4, enc.dim)
