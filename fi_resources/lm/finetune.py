"""Supervised fine-tuning of a causal LM on (prompt, target) pairs: full, top layers only, or LoRA adapters,
in fp32 or bf16 mixed precision on the CPU or one GPU (accelerate)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def finetune(
    model,
    tokenizer,
    examples: Sequence[tuple[str, str]],
    out_dir: Path,
    epochs: int = 1,
    lr: float = 5e-5,
    batch_size: int = 8,
    max_tokens: int = 512,
    seed: int = 0,
    train_top_layers: float = 1.0,
    progress: Callable[[str], None] | None = None,
    lora_rank: int = 0,
    precision: str = "fp32",
    device: str = "auto",
) -> tuple[torch.nn.Module, dict]:
    """Supervised fine-tuning on (prompt, target) pairs; loss on target tokens only. Saves to out_dir and
    returns the trained model (after LoRA, the merged one: use it in place of `model`) and a report.

    `train_top_layers` < 1 trains only that share of the top decoder layers (embeddings and the layers
    below frozen): backward then stops early, which is what makes CPU fine-tuning affordable.
    `lora_rank` > 0 trains LoRA adapters of that rank (peft) on every attention and MLP projection of
    those layers instead of the weights themselves; the adapters are merged into the weights before
    saving, so the saved folder loads like any full fine-tune.
    `precision` "bf16" trains in bf16 autocast over fp32 master weights; `device` "auto" takes a GPU when
    there is one. The trained model comes back on the CPU in fp32, where the in-process decoders run.
    """
    if lora_rank < 0:
        raise ValueError(f"lora_rank must be >= 0, not {lora_rank}")
    if not 0.0 < train_top_layers <= 1.0:
        raise ValueError(f"train_top_layers must be in (0, 1], not {train_top_layers}")
    # Before the model is touched (LoRA adapters, frozen layers): a refused choice leaves it as it was.
    accelerator = _accelerator(precision, device)
    tok = tokenizer
    rows = []
    for prompt, target in examples:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (p + t)[-max_tokens:]
        labels = ([-100] * len(p) + t)[-max_tokens:]
        rows.append((ids, labels))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = model.train()
    peft = None
    if lora_rank:
        peft, trainable = _add_lora(model, lora_rank, train_top_layers)
    else:
        trainable = _unfreeze_top(model, train_top_layers)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    steps_total = epochs * math.ceil(len(rows) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.1, 1 - s / max(1, steps_total)))
    model, opt, sched = accelerator.prepare(model, opt, sched)
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
            ids, mask, lab = (t.to(accelerator.device) for t in (ids, mask, lab))
            with accelerator.autocast():
                loss = _target_loss(model, ids, mask, lab)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int(mask.sum())
            step += 1
            if progress and (step % 5 == 0 or step == steps_total):
                rate = tokens / (time.perf_counter() - start)
                progress(f"step {step}/{steps_total} loss {losses[-1]:.3f} ({rate:.0f} tok/s)")
    trained_parameters = sum(p.numel() for p in trainable)
    trained_on = str(accelerator.device)
    model = accelerator.unwrap_model(model).to("cpu", dtype=torch.float32)
    accelerator.free_memory()
    if peft is not None:
        # Fold B·A·alpha/r into each projection and drop the adapter modules.
        model = peft.merge_and_unload()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    seconds = time.perf_counter() - start
    return model, {
        "examples": len(rows),
        "epochs": epochs,
        "steps": step,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(losses[-3:]) / len(losses[-3:]) if losses else None,
        "train_tokens": tokens,
        "train_seconds": round(seconds, 1),
        "train_tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "trained_parameters": trained_parameters,
        "lora_rank": lora_rank,
        "precision": precision,
        "device": trained_on,
    }


def _accelerator(precision: str, device: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no GPU (use 'auto' or 'cpu')")
    # accelerate keeps one process-wide state and refuses a second Accelerator with other flags; a student
    # is trained start to end here, so the next one may choose its own precision and device.
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=device == "cpu")
    if accelerator.num_processes > 1:
        # _target_loss calls the decoder inside the model, past a DDP wrapper's gradient sync.
        raise ValueError("student fine-tuning runs in one process (one GPU or the CPU), not under a launcher")
    return accelerator


def _add_lora(model, rank: int, share: float) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    from peft import LoraConfig, get_peft_model

    layers = model.get_decoder().layers
    first = len(layers) - max(1, round(share * len(layers)))
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(first, len(layers))),
        bias="none",
    )
    # get_peft_model injects the adapters into model's own modules and freezes everything else.
    peft = get_peft_model(model, config)
    return peft, [p for p in model.parameters() if p.requires_grad]


def _unfreeze_top(model, share: float) -> list[torch.nn.Parameter]:
    layers = model.get_decoder().layers
    first = len(layers) - max(1, round(share * len(layers)))
    for p in model.parameters():
        p.requires_grad_(share >= 1.0)
    if share < 1.0:
        for layer in layers[first:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in model.get_decoder().norm.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _target_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on target tokens only, projecting just those positions onto the vocabulary
    (the 49k-word output layer over every prompt token would otherwise cost ~20 % of the step)."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])
