import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Derived model copies (dequantised SmolLM2, tiny random models), built once per test session."""
    path = Path(os.environ.get("FI_TEST_MODEL_CACHE") or tmp_path_factory.mktemp("model-cache"))
    os.environ["FI_MODEL_CACHE"] = str(path)
    return path


@pytest.fixture
def fi_home(tmp_path, monkeypatch, model_cache) -> Path:
    home = tmp_path / "fi"
    monkeypatch.setenv("FI_HOME", str(home))
    return home
