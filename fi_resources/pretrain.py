"""Pre-training a tiny Llama-style model from scratch on a token stream, and held-out evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def tokenize_stream(tok: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    ids: list[int] = []
    for text in texts:
        ids.extend(tok(text, add_special_tokens=False)["input_ids"])
        ids.append(tok.eos_token_id)
    return ids


def tiny_llama(
    vocab_size: int, hidden: int, layers: int, seq_len: int, tok: PreTrainedTokenizerBase
) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 8 * 8,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=seq_len,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(config)


def pretrain(
    tok: PreTrainedTokenizerBase,
    token_ids: list[int],
    out_dir: Path,
    hidden: int = 128,
    layers: int = 2,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    epochs: int = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Train from scratch for `epochs` passes over exactly `token_ids` (both corpora get equal tokens)."""
    torch.manual_seed(seed)
    model = tiny_llama(len(tok), hidden, layers, seq_len, tok)
    n_seq = len(token_ids) // seq_len
    if n_seq == 0:
        raise ValueError(f"need at least {seq_len} tokens to pre-train, got {len(token_ids)}")
    data = torch.tensor(token_ids[: n_seq * seq_len]).view(n_seq, seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    steps = epochs * math.ceil(n_seq / batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    gen = torch.Generator().manual_seed(seed)
    start, step, losses = time.perf_counter(), 0, []
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n_seq, generator=gen).split(batch_size):
            batch = data[idx]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if progress and (step % 20 == 0 or step == steps):
                rate = step * batch_size * seq_len / (time.perf_counter() - start)
                progress(f"step {step}/{steps} loss {loss.item():.3f} ({rate:.0f} tok/s)")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    seconds = time.perf_counter() - start
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": n_seq * seq_len * epochs,
        "steps": step,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4),
        "train_seconds": round(seconds, 1),
        "tokens_per_s": round(n_seq * seq_len * epochs / seconds, 1),
    }


@torch.inference_mode()
def heldout_loss(
    model: LlamaForCausalLM, token_ids: list[int], seq_len: int = 128, max_seqs: int = 64
) -> float:
    """Mean next-token loss on held-out text (lower is better)."""
    n = min(max_seqs, len(token_ids) // seq_len)
    if n == 0:
        return float("nan")
    data = torch.tensor(token_ids[: n * seq_len]).view(n, seq_len)
    losses = [model(input_ids=b, labels=b).loss.item() for b in data.split(16)]
    return float(sum(losses) / len(losses))
