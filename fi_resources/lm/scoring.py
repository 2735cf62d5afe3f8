"""Scoring with a causal LM: mean log-probability of continuations, and the right-padding both scorers share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def right_padded(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded on the right into one (rows, longest) tensor, and its attention mask (scoring)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids, mask


@torch.inference_mode()
def mean_logprob(
    model, tokenizer, contexts: Sequence[str], continuations: Sequence[str], batch_size: int = 8
) -> list[float]:
    """Mean log-probability per token of each continuation given its context."""
    scores: list[float] = []
    tok = tokenizer
    for b in range(0, len(contexts), batch_size):
        ctx_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in contexts[b : b + batch_size]]
        cont_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations[b : b + batch_size]]
        seqs = [(c or [tok.eos_token_id]) + x for c, x in zip(ctx_ids, cont_ids, strict=True)]
        ids, mask = right_padded(seqs, tok.pad_token_id)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for r, (c, x) in enumerate(zip(ctx_ids, cont_ids, strict=True)):
            if not x:
                scores.append(float("-inf"))
                continue
            first = len(c or [0])
            pos = torch.arange(first - 1, first - 1 + len(x))
            scores.append(logp[r, pos, torch.tensor(x)].mean().item())
    return scores


@torch.inference_mode()
def next_token_logprobs(
    model, tokenizer, prompts: Sequence[str], token_ids: Sequence[int], batch_size: int = 32
) -> np.ndarray:
    """(prompts, tokens) log-probabilities of each of `token_ids` as the token right after each prompt; the
    output layer runs only at the prompts' last positions."""
    out = np.zeros((len(prompts), len(token_ids)), dtype=np.float32)
    cols = torch.tensor(list(token_ids))
    for b in range(0, len(prompts), batch_size):
        seqs = [tokenizer(p, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
                for p in prompts[b : b + batch_size]]  # fmt: skip
        ids, mask = right_padded(seqs, tokenizer.pad_token_id)
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]
        logp = torch.log_softmax(model.get_output_embeddings()(last).float(), -1)
        out[b : b + len(seqs)] = logp[:, cols].numpy()
    return out
