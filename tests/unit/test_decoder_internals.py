"""The decoder's guard on transformers' cache internals: passes on the installed version, and names the
version and the tested range when the version or an internal it relies on changes."""

import tomllib
from pathlib import Path

import pytest
import torch
import transformers
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from fi_resources.lm import decoding


def test_check_passes_on_installed_transformers() -> None:
    decoding.check_cache_internals()
    assert decoding._cache_internals_problems() == []


def test_pyproject_pins_the_tested_range() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("transformers")]
    assert pins == ["transformers" + decoding.TESTED_TRANSFORMERS]


@pytest.mark.parametrize("version", ["5.23.1", "5.25.0", "6.0.0", "4.57.0"])
def test_version_outside_tested_range_raises(monkeypatch, version: str) -> None:
    monkeypatch.setattr(decoding, "installed_transformers", lambda: version)
    with pytest.raises(RuntimeError) as err:
        decoding.check_cache_internals()
    assert f"transformers {version}" in str(err.value)
    assert decoding.TESTED_TRANSFORMERS in str(err.value)


def _remove(monkeypatch, cls: type, name: str) -> None:
    """Delete `name` from cls and every base defining it, so getattr no longer finds it."""
    for klass in cls.__mro__:
        if name in vars(klass):
            monkeypatch.delattr(klass, name)
    assert not hasattr(cls, name)


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (DynamicLayer, "lazy_initialization"),
        (DynamicLayer, "update"),
        (DynamicLayer, "get_seq_length"),
        (Cache, "update"),
        (Cache, "get_seq_length"),
    ],
)
def test_missing_internal_raises(monkeypatch, cls: type, name: str) -> None:
    _remove(monkeypatch, cls, name)
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}\.{name} is missing") as err:
        decoding.check_cache_internals()
    assert transformers.__version__ in str(err.value) and decoding.TESTED_TRANSFORMERS in str(err.value)


def test_kv_stored_under_another_name_raises(monkeypatch) -> None:
    # As if a release renamed DynamicLayer.keys/values (the decoder reads them after the prefill).
    def update(self, key_states, value_states, *args, **kwargs):
        self.is_initialized = True
        self.key_cache, self.value_cache = key_states, value_states
        return key_states, value_states

    monkeypatch.setattr(DynamicLayer, "update", update)
    with pytest.raises(RuntimeError, match=r"\.keys/\.values"):
        decoding.check_cache_internals()


def test_changed_constructor_raises(monkeypatch) -> None:
    original = DynamicCache.__init__

    def init(self, ddp_cache_data=None, model_config=None):
        original(self, ddp_cache_data, config=model_config)

    monkeypatch.setattr(DynamicCache, "__init__", init)
    with pytest.raises(RuntimeError, match=r"DynamicCache\(\) takes no `config`"):
        decoding.check_cache_internals()


def test_cache_bypassing_the_layer_update_raises(monkeypatch) -> None:
    # As if Cache.update stopped dispatching to the layer (the buffer layer would then never be written).
    monkeypatch.setattr(
        Cache, "update", lambda self, key_states, value_states, layer_idx, *a, **k: (key_states, value_states)
    )
    with pytest.raises(RuntimeError, match="Cache.update does not write through"):
        decoding.check_cache_internals()


def test_decoder_runs_the_check_once(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(decoding, "check_cache_internals", lambda: calls.append(1))
    monkeypatch.setattr(decoding, "_checked", False)
    decoding._ensure_cache_internals()
    decoding._ensure_cache_internals()
    assert calls == [1]


def test_decoder_refuses_to_run_outside_tested_range(monkeypatch) -> None:
    monkeypatch.setattr(decoding, "_checked", False)
    monkeypatch.setattr(decoding, "installed_transformers", lambda: "9.0.0")
    # The check comes before the model is touched, so no model is needed here.
    with pytest.raises(RuntimeError, match="transformers 9.0.0"):
        decoding.greedy_token_ids(None, None, set(), [[1, 2]], max_new_tokens=2)
    assert not torch.is_inference_mode_enabled()
