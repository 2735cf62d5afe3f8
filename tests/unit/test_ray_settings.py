"""The Ray engine's settings (issue 11): chosen by one setting, validated, and invisible to outputs. The
engine itself runs against a real cluster in tests/integration/test_ray_engine.py."""

import pydantic
import pytest

from fi_resources.ray_engine import RaySettings
from fi_resources.resources import ModelsResource, WarehouseResource


def models(tmp_path, **kwargs) -> ModelsResource:
    return ModelsResource(profile="tiny", warehouse=WarehouseResource(home=str(tmp_path)), **kwargs)


def test_local_is_the_default_and_ray_is_one_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FI_ENGINE", raising=False)
    assert models(tmp_path).ray_settings() is None
    assert models(tmp_path).parts().ray is None
    chosen = models(tmp_path, engine="ray", ray_workers=3, ray_cpus_per_worker=0.5)
    assert chosen.ray_settings() == RaySettings(workers=3, num_cpus=0.5, num_gpus=0.0)
    monkeypatch.setenv("FI_ENGINE", "ray")
    assert models(tmp_path).parts().ray == RaySettings()
    assert models(tmp_path, engine="local").ray_settings() is None  # the field wins over the environment


def test_the_engine_does_not_change_what_outputs_depend_on(tmp_path) -> None:
    # Same answers by construction (tests/integration/test_ray_engine.py): no asset goes stale on a switch.
    assert models(tmp_path, engine="ray").fingerprint() == models(tmp_path).fingerprint()


def test_unknown_engines_and_bad_pools_are_refused(tmp_path, monkeypatch) -> None:
    with pytest.raises(pydantic.ValidationError, match="engine 'spark' is not one of local, ray"):
        models(tmp_path, engine="spark")
    monkeypatch.setenv("FI_ENGINE", "dask")
    with pytest.raises(ValueError, match="FI_ENGINE='dask'"):
        models(tmp_path).ray_settings()
    for bad in ({"workers": 0}, {"num_cpus": -1}, {"chunk_size": 0}):
        with pytest.raises(ValueError, match="bad Ray settings"):
            RaySettings(**bad)
