"""CausalLM: one wrapper for every role that needs a causal LM (teacher completions, students, judge).

A profile swaps models without touching an asset. Decoding, scoring and fine-tuning live in their own
modules; the methods here hold the model and tokenizer and delegate to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fi_resources.lm import decoding, finetune, scoring
from fi_resources.logic.copy_constraint import ExcerptCopyConstraint, TokenPieces


@dataclass
class GenerationStats:
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    forced_tokens: int = 0  # tokens a decoding constraint chose over the model's favourite

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


class CausalLM:
    """A transformers causal LM with batched greedy generation, scoring and supervised fine-tuning."""

    def __init__(self, path: str | Path, name: str | None = None, trust_remote_code: bool = False):
        """`trust_remote_code`: run code the model's folder or hub repository ships (a user's explicit choice).
        Passed as False, not left unset: unset, transformers may ask on a terminal instead of refusing."""
        self.path = Path(path)
        self.name = name or self.path.name
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"  # batched decoding needs the prompts right-aligned
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=torch.float32, trust_remote_code=trust_remote_code
        ).eval()
        self.stats = GenerationStats()
        self._pieces: TokenPieces | None = None

    def add_tokens(self, tokens: Sequence[str]) -> int:
        """Make each string one token (e.g. the excerpt markup, 3-4 BPE tokens each otherwise).

        A new embedding starts as the mean of the embeddings of the pieces it used to be split into, so the
        model starts from what it knew. Returns how many tokens were new."""
        pieces = {t: self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in tokens}
        added = self.tokenizer.add_tokens(list(tokens))
        if not added:
            return 0
        self.model.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        matrices = {
            id(m.weight): m.weight
            for m in (self.model.get_input_embeddings(), self.model.get_output_embeddings())
            if m is not None
        }
        with torch.no_grad():
            for weight in matrices.values():  # one matrix when the embeddings are tied
                for t, old in pieces.items():
                    weight[self.tokenizer.convert_tokens_to_ids(t)] = weight[old].mean(0)
        return added

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
        engine: str = "loop",
        copy_sources: Sequence[str] | None = None,
    ) -> list[str]:
        """Greedy completions, token for token what one-at-a-time greedy `model.generate` gives.

        `engine="loop"` (default) is our own KV-cache decode loop (`greedy_token_ids`): up to `batch_size` rows
        decode together, finished rows leave the batch and queued prompts take their place. `engine="hf"` is
        transformers' `generate` on length-sorted batches, kept as the reference the benchmark compares with.
        `stop` cuts each completion before its first occurrence (the loop stops decoding that row there).
        `copy_sources` (one text per prompt, loop engine only) makes excerpt markers copy-constrained: inside
        `<excerpt>…</excerpt>` a row can only write text of its source (`logic.copy_constraint`).
        """
        if engine not in ("loop", "hf"):
            raise ValueError(f"engine must be 'loop' or 'hf', not {engine!r}")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if stop == "":
            raise ValueError("stop must be a non-empty string or None")
        if copy_sources is not None and (engine != "loop" or len(copy_sources) != len(prompts)):
            raise ValueError("copy_sources needs the loop engine and one source text per prompt")
        start = time.perf_counter()
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        if engine == "hf":
            rows = self._hf_token_ids(ids, max_new_tokens, batch_size, progress, start)
        else:
            constraints = None
            if copy_sources is not None:
                pieces = self.token_pieces()
                constraints = [
                    ExcerptCopyConstraint(src, pieces, self._eos_ids, max_new_tokens) for src in copy_sources
                ]
            rows = self.greedy_token_ids(
                ids, max_new_tokens, batch_size, stop, progress, start, constraints=constraints
            )
            if constraints:
                self.stats.forced_tokens += sum(c.forced for c in constraints)
        out = []
        skip = self._eos_ids | {self.tokenizer.pad_token_id}
        for row in rows:
            row = [t for t in row if t not in skip]
            self.stats.new_tokens += len(row)
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            out.append(text.split(stop)[0] if stop else text)
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out

    def token_pieces(self) -> TokenPieces:
        """The decoded text of every token (built once; the vocabulary only changes in `add_tokens`)."""
        if self._pieces is None or len(self._pieces.pieces) != len(self.tokenizer):
            ids = [[i] for i in range(len(self.tokenizer))]
            self._pieces = TokenPieces(self.tokenizer.batch_decode(ids, clean_up_tokenization_spaces=False))
        return self._pieces

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos}

    def _hf_token_ids(
        self,
        ids: list[list[int]],
        max_new_tokens: int,
        batch_size: int,
        progress: Callable[[int, int, float], None] | None,
        start: float,
    ) -> list[list[int]]:
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[int]] = [[] for _ in ids]
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            gen = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            for i, row in zip(idx, gen[:, enc["input_ids"].shape[1] :].tolist(), strict=True):
                out[i] = row
            if progress:
                progress(b + len(idx), len(ids), time.perf_counter() - start)
        return out

    def greedy_token_ids(
        self,
        ids: Sequence[Sequence[int]],
        max_new_tokens: int = 48,
        batch_size: int = 16,
        stop: str | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        start: float | None = None,
        prefill_tokens: int = 4096,
        constraints: Sequence[decoding.RowConstraint | None] | None = None,
    ) -> list[list[int]]:
        """Greedy decoding of tokenised prompts with continuous batching (`decoding.greedy_token_ids`);
        returns the new token ids of each (ending with the EOS token where one was produced)."""
        return decoding.greedy_token_ids(
            self.model,
            self.tokenizer,
            self._eos_ids,
            ids,
            max_new_tokens,
            batch_size,
            stop,
            progress,
            start,
            prefill_tokens,
            constraints,
        )

    # ---- scoring ------------------------------------------------------------------------------
    def mean_logprob(
        self, contexts: Sequence[str], continuations: Sequence[str], batch_size: int = 8
    ) -> list[float]:
        """Mean log-probability per token of each continuation given its context."""
        return scoring.mean_logprob(self.model, self.tokenizer, contexts, continuations, batch_size)

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
        lora_rank: int = 0,
        precision: str = "fp32",
        device: str = "auto",
    ) -> dict:
        """Supervised fine-tuning on (prompt, target) pairs (`finetune.finetune`); saves to out_dir and
        returns its report. After LoRA the model held here is the merged one."""
        self.model, report = finetune.finetune(
            self.model,
            self.tokenizer,
            examples,
            out_dir,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            max_tokens=max_tokens,
            seed=seed,
            train_top_layers=train_top_layers,
            progress=progress,
            lora_rank=lora_rank,
            precision=precision,
            device=device,
        )
        return report
