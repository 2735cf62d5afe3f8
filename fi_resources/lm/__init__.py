"""Causal language models: loading (GGUF, saved folders, tiny random), batched generation, scoring, fine-tuning.

`CausalLM` (model.py) is the one entry point; loading.py, decoding.py, scoring.py and finetune.py hold the
four jobs. The names below are re-exported so `from fi_resources.lm import ...` keeps working.
"""

from fi_resources.lm.decoding import TESTED_TRANSFORMERS, _chunks, check_cache_internals
from fi_resources.lm.loading import (
    SMOLLM2_GGUF,
    SMOLLM2_PACKAGE,
    materialize_smollm2,
    materialize_tiny_lm,
    smollm2_gguf_dir,
)
from fi_resources.lm.model import CausalLM, GenerationStats
from fi_resources.lm.scoring import next_token_logprobs, right_padded

__all__ = [
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "TESTED_TRANSFORMERS",
    "CausalLM",
    "GenerationStats",
    "_chunks",
    "check_cache_internals",
    "materialize_smollm2",
    "materialize_tiny_lm",
    "next_token_logprobs",
    "right_padded",
    "smollm2_gguf_dir",
]
