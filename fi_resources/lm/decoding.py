"""Greedy decoding with continuous batching over preallocated KV buffers (`greedy_token_ids`).

Built on transformers' cache internals (`Cache`, `DynamicCache`, `DynamicLayer`), which change between
releases without notice: `check_cache_internals` verifies the parts used here before the decoder first runs.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from packaging.specifiers import SpecifierSet
from transformers import LlamaConfig
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# transformers releases the decoder is tested against; pyproject.toml pins the same range. The cache classes
# are internals, so even a minor release may rename what _BufferLayer and _prefill rely on.
TESTED_TRANSFORMERS = ">=5.24,<5.25"

_checked = False  # set once check_cache_internals has passed in this process


def check_cache_internals() -> None:
    """Raise RuntimeError unless the installed transformers is in TESTED_TRANSFORMERS and its cache classes
    still have what the decoder uses: `Cache(layers=...)`, `Cache.update`/`get_seq_length` dispatching to the
    layer, `DynamicCache(config=...)` with one layer per model layer, and `DynamicLayer` keeping its KV in
    `keys`/`values`, gated by `is_initialized` (`lazy_initialization`), with `update(key_states, value_states, ...)`.
    """
    version = installed_transformers()
    if not SpecifierSet(TESTED_TRANSFORMERS).contains(version, prereleases=True):
        raise RuntimeError(
            f"transformers {version} is installed, but the decoder in {__name__} is tested only with "
            f"transformers{TESTED_TRANSFORMERS} (its KV cache subclasses transformers' cache internals). "
            f"Install a version in that range (pyproject.toml pins it), or update {__name__} and "
            "TESTED_TRANSFORMERS after running tests/unit/test_generation.py."
        )
    problems = _cache_internals_problems()
    if problems:
        raise RuntimeError(
            f"transformers {version} cache internals differ from what {__name__} relies on (tested with "
            f"transformers{TESTED_TRANSFORMERS}): " + "; ".join(problems)
        )


def installed_transformers() -> str:
    # The installed distribution's version (what pyproject pins), not `transformers.__version__`: after the
    # backend tests, sys.modules["transformers"] was seen to be a different module object from the one this
    # module imported, so the attribute is not one reliable place to read (or patch) the version.
    return importlib.metadata.version("transformers")


def _ensure_cache_internals() -> None:
    global _checked
    if not _checked:
        check_cache_internals()
        _checked = True


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _cache_internals_problems() -> list[str]:
    problems = []
    for cls, names in (
        (DynamicLayer, ("update", "get_seq_length", "get_mask_sizes", "lazy_initialization")),
        (Cache, ("update", "get_seq_length", "get_mask_sizes")),
    ):
        problems += [f"{cls.__name__}.{n} is missing" for n in names if not callable(getattr(cls, n, None))]
    if problems:
        return problems
    expected = [
        (DynamicLayer.update, ["self", "key_states", "value_states"], "DynamicLayer.update"),
        (Cache.update, ["self", "key_states", "value_states", "layer_idx"], "Cache.update"),
    ]
    for fn, head, name in expected:
        if _params(fn)[: len(head)] != head:
            problems.append(f"{name} takes {_params(fn)}, expected it to start with {head}")
    if "layers" not in _params(Cache.__init__):
        problems.append("Cache() takes no `layers` argument")
    if "config" not in _params(DynamicCache.__init__):
        problems.append("DynamicCache() takes no `config` argument")
    if problems:
        return problems
    # Run the calls the decoder makes on two-token tensors: cheap, and catches renamed attributes.
    try:
        k, v = torch.zeros((1, 1, 2, 2)), torch.ones((1, 1, 2, 2))
        layer = DynamicLayer()
        if getattr(layer, "is_initialized", None) is not False:
            problems.append("a new DynamicLayer has no is_initialized=False")
        layer.update(k, v)
        if not (
            isinstance(getattr(layer, "keys", None), torch.Tensor)
            and isinstance(getattr(layer, "values", None), torch.Tensor)
            and torch.equal(layer.keys, k)
            and torch.equal(layer.values, v)
        ):
            problems.append("DynamicLayer.update does not keep the KV in .keys/.values")
        if getattr(layer, "is_initialized", None) is not True or layer.get_seq_length() != 2:
            problems.append("DynamicLayer.update does not set is_initialized or get_seq_length()")
        config = LlamaConfig(
            vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2
        )
        layers = DynamicCache(config=config).layers
        if not (
            isinstance(layers, list) and len(layers) == 2 and all(isinstance(x, DynamicLayer) for x in layers)
        ):
            problems.append("DynamicCache(config=...).layers is not one DynamicLayer per model layer")
        buffered = _BufferLayer(k, v, extra=1)
        cache = Cache(layers=[buffered])
        keys, values = cache.update(k[:, :, :1], v[:, :, :1], 0)
        if cache.layers[0] is not buffered or buffered.length != 3 or keys.shape[-2] != 3:
            problems.append("Cache.update does not write through the layer's update")
        if cache.get_seq_length(0) != 3:
            problems.append("Cache.get_seq_length does not ask the layer")
    except Exception as e:  # any error in the probe is an incompatibility, reported with the others
        problems.append(f"probing the cache classes raised {type(e).__name__}: {e}")
    return problems


@torch.inference_mode()
def greedy_token_ids(
    model,
    tokenizer,
    eos: set[int],
    ids: Sequence[Sequence[int]],
    max_new_tokens: int = 48,
    batch_size: int = 16,
    stop: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    start: float | None = None,
    prefill_tokens: int = 4096,
    constraints: Sequence[RowConstraint | None] | None = None,
) -> list[list[int]]:
    """Greedy decoding of tokenised prompts with continuous batching; returns the new token ids of each
    (ending with the EOS token where one was produced).

    `constraints` (one per prompt, or None) restrict what a row may write: where the model's favourite
    token is refused, the best-scoring allowed one is written instead (see `RowConstraint`).

    Why it beats `generate` on a CPU: a decode step costs about the same at 8 or 64 rows (it is bound by
    reading the weights), so the batch is kept full — a row that finishes (EOS, `max_new_tokens`, or
    `stop` seen in its text) is dropped from the KV cache at once and queued prompts (sorted by length)
    are prefilled into the free slots. Prompts are prefilled in chunks of <= `prefill_tokens` padded
    tokens, projecting only the last position onto the vocabulary. The KV cache lives in preallocated
    buffers written in place (transformers' DynamicCache re-copies the whole cache every step).
    Left padding: every row has its own position ids and attention mask, so padding never changes a
    row's result beyond float rounding.
    """
    _ensure_cache_internals()
    start = time.perf_counter() if start is None else start
    pad = tokenizer.pad_token_id
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
                new = _prefill(model, [ids[i] for i in chunk], chunk, pad, constraints)
                state = new if state is None else state.merge(new)
            fresh = set(take)
            for r, i in enumerate(state.rows):
                if i in fresh:
                    out[i].append(int(state.last[r]))
        else:
            if state.cache is None:
                state.start_decoding(reserve=max_new_tokens)
            state.mask = torch.cat([state.mask, state.mask.new_ones((state.size, 1))], dim=1)
            logits = model(
                input_ids=state.last[:, None],
                attention_mask=state.mask,
                position_ids=state.next_pos[:, None],
                past_key_values=state.cache,
                use_cache=True,
            ).logits
            state.last = _pick(logits[:, -1], state.rows, state.alive, constraints)
            state.next_pos += 1
            for r, t in enumerate(state.last.tolist()):
                if state.alive[r]:
                    out[state.rows[r]].append(t)
        for r, i in enumerate(state.rows):
            row = out[i]
            if state.alive[r] and (
                row[-1] in eos
                or len(row) >= max_new_tokens
                or (stop and stop in tokenizer.decode(row[-window:], skip_special_tokens=True))
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


class RowConstraint(Protocol):
    """What one row may write (e.g. `logic.copy_constraint.ExcerptCopyConstraint`)."""

    def accepts(self, token: int) -> bool: ...

    def allowed(self) -> list[int] | None: ...  # None: any token `accepts` takes

    def advance(self, token: int, forced: bool = False) -> None: ...


def _pick(
    logits: torch.Tensor,
    rows: list[int],
    alive: list[bool],
    constraints: Sequence[RowConstraint | None] | None,
) -> torch.Tensor:
    """The next token of every row: its argmax, or for a constrained row the best token it allows."""
    tokens = logits.argmax(-1)
    if constraints is None:
        return tokens
    for r, i in enumerate(rows):
        rule = constraints[i]
        if rule is None or not alive[r]:
            continue
        token = int(tokens[r])
        forced = not rule.accepts(token)
        if forced:
            allowed = rule.allowed()
            if allowed is None:
                ranked = logits[r].topk(32).indices.tolist()
                token = next((t for t in ranked if rule.accepts(t)), token)
            elif allowed:
                token = allowed[int(logits[r, torch.tensor(allowed)].argmax())]
            tokens[r] = token
        rule.advance(token, forced)
    return tokens


def _prefill(
    model,
    prompts: list[list[int]],
    rows: list[int],
    pad: int,
    constraints: Sequence[RowConstraint | None] | None = None,
) -> _Batch:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.tensor(p)
        mask[r, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    logits = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=pos,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    last = _pick(logits[:, -1], rows, [True] * len(rows), constraints)
    return _Batch(rows, kv, mask, pos[:, -1] + 1, last)


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
