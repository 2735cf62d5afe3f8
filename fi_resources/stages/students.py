"""Distillation: fine-tune a fresh copy of the base LM on a teacher's (prompt, target) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fi_resources.logic.prompts import PROMPT_VERSION
from fi_resources.settings import StudentSettings
from fi_resources.stages import Log, StageResult, no_log


def train_student(
    student,
    examples: Sequence[tuple[str, str]],
    out: Path,
    epochs: int,
    batch_size: int,
    settings: StudentSettings,
    base_model: str,
    new_tokens: Sequence[str] = (),
    log: Log = no_log,
) -> StageResult[dict]:
    """Fine-tune `student` (a fresh, unshared `CausalLM`) into `out`. `new_tokens` become single tokens of its
    vocabulary first. Returns the facts stored with the model."""
    added = student.add_tokens(new_tokens) if new_tokens else 0
    stats = student.finetune(
        list(examples),
        out,
        epochs=epochs,
        lr=settings.student_lr,
        batch_size=batch_size,
        train_top_layers=settings.student_train_top_layers,
        lora_rank=settings.student_lora_rank,
        precision=settings.student_precision,
        device=settings.student_device,
        seed=settings.seed,
        progress=log,
    )
    return StageResult(
        {"base_model": base_model, "prompt_version": PROMPT_VERSION, "added_tokens": added, **stats}
    )
