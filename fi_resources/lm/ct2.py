"""A CTranslate2 engine for the students: `CT2LM` has `CausalLM`'s generate interface on a converted copy.

The model folder (the dequantised GGUF or a fine-tuned student) is converted once per (content, compute
type, CTranslate2 version) into `<model cache>/ct2/` and reused; the conversion is written to a temporary
folder and renamed, so a crash never leaves a half-written model that later runs would load.

CTranslate2 4.x takes no per-step logits processor (`generate_batch` has `callback`, which can only stop a
row), so copy-constrained excerpt decoding cannot run inside it: a call with `copy_sources` is decoded by
the torch fp32 loop instead, logged once and counted in `torch_fallback_prompts` (stage metadata).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock
from transformers import AutoTokenizer, GenerationConfig

from fi_resources.lm.model import CausalLM, GenerationStats

log = logging.getLogger(__name__)

ENGINES = ("torch", "ctranslate2")
# The CPU compute types of the CTranslate2 wheel (`ctranslate2.get_supported_compute_types("cpu")`).
COMPUTE_TYPES = ("int8", "int8_float32", "float32")


def check_engine(engine: str, compute_type: str) -> None:
    """Raise ValueError naming the choices unless `engine` / `compute_type` are known."""
    if engine not in ENGINES:
        raise ValueError(f"student_engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(
            f"student_compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}"
        )


def conversion_dir(source: str | Path, cache_dir: Path, compute_type: str) -> Path:
    """Where the conversion of `source` at `compute_type` lives: named by a hash of the folder's content
    (a student retrained at the same path gets a new conversion), the compute type and the CTranslate2
    version (its model format may change between releases)."""
    import ctranslate2

    from fi_resources.cache import folder_fingerprint

    source = Path(source).resolve()
    key = hashlib.sha256(
        f"{folder_fingerprint(source)}\0{compute_type}\0{ctranslate2.__version__}".encode()
    ).hexdigest()[:12]
    return cache_dir / "ct2" / f"{source.name}-{compute_type}-{key}"


def convert(source: str | Path, cache_dir: Path, compute_type: str = "int8") -> tuple[Path, bool]:
    """The CTranslate2 copy of the transformers folder `source` (converted now if not cached); returns it and
    whether this call converted."""
    from ctranslate2.converters import TransformersConverter

    out = conversion_dir(source, cache_dir, compute_type)
    if (out / "model.bin").exists():
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    # Parallel steps may both find it missing: one converts, the other waits and reuses it.
    with FileLock(str(out) + ".lock"):
        if (out / "model.bin").exists():
            return out, False
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.perf_counter()
        # Weights stored at the compute type: smaller on disk and nothing to quantise at load time.
        TransformersConverter(str(source)).convert(str(tmp), quantization=compute_type, force=True)
        tmp.rename(out)
        log.info(
            "converted %s to CTranslate2 %s in %.1f s: %s",
            source,
            compute_type,
            time.perf_counter() - start,
            out,
        )
    return out, True


class CT2LM:
    """Greedy generation with CTranslate2 on CPU, interface-compatible with `CausalLM.generate` (what
    `LocalBackend` calls): same tokenisation, EOS ids, `max_new_tokens` and `stop` rule.

    `torch_lm` loads the same model in torch (only when a call needs the copy constraint)."""

    def __init__(
        self,
        path: str | Path,
        cache_dir: Path,
        compute_type: str = "int8",
        name: str | None = None,
        torch_lm: Callable[[], CausalLM] | None = None,
        intra_threads: int = 0,
        trust_remote_code: bool = False,
    ):
        import ctranslate2

        check_engine("ctranslate2", compute_type)
        self.path = Path(path)
        self.name = name or self.path.name
        self.compute_type = compute_type
        self.engine = f"ctranslate2-{compute_type}"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.converted, self.converted_now = convert(self.path, cache_dir, compute_type)
        if not intra_threads:
            import torch

            intra_threads = torch.get_num_threads()  # as many cores as the torch engine would use
        self.generator = ctranslate2.Generator(
            str(self.converted), device="cpu", compute_type=compute_type, intra_threads=intra_threads
        )
        self._eos = self._eos_from(self.path)
        self._torch_lm = torch_lm
        self.stats = GenerationStats()
        self.torch_fallback_prompts = 0

    def _eos_from(self, path: Path) -> set[int]:
        # The same ids CausalLM._eos_ids reads (generation config first, else the tokenizer's).
        try:
            eos = GenerationConfig.from_pretrained(path).eos_token_id
        except OSError:
            eos = None
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos}

    @property
    def _eos_ids(self) -> set[int]:
        return self._eos

    chat_prompt = CausalLM.chat_prompt  # uses only self.tokenizer

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        batch_size: int = 16,
        stop: str | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        engine: str = "ctranslate2",
        copy_sources: Sequence[str] | None = None,
    ) -> list[str]:
        """Greedy completions of `prompts`, cut before the first `stop` (a row stops decoding there).
        With `copy_sources`, decoded by the torch fp32 loop (see the module docstring)."""
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if stop == "":
            raise ValueError("stop must be a non-empty string or None")
        if copy_sources is not None:
            return self._torch_generate(prompts, max_new_tokens, batch_size, stop, progress, copy_sources)
        start = time.perf_counter()
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        empty = [i for i in range(len(ids)) if not ids[i]]
        if empty:
            raise ValueError(f"prompt(s) {empty[:5]} tokenise to nothing: there is nothing to condition on")
        rows = self.token_ids(ids, max_new_tokens, batch_size, stop, progress, start)
        out = []
        skip = self._eos | {self.tokenizer.pad_token_id}
        for row in rows:
            row = [t for t in row if t not in skip]
            self.stats.new_tokens += len(row)
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            out.append(text.split(stop)[0] if stop else text)
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out

    def token_ids(
        self,
        ids: Sequence[Sequence[int]],
        max_new_tokens: int = 48,
        batch_size: int = 16,
        stop: str | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        start: float | None = None,
    ) -> list[list[int]]:
        """New token ids of each tokenised prompt (without the EOS token)."""
        start = time.perf_counter() if start is None else start
        window = len(stop.encode("utf8")) + 2 if stop else 0  # as in decoding.greedy_token_ids
        out: list[list[int]] = [[] for _ in ids]
        finished = 0

        def run(group: list[int]) -> None:
            written: dict[int, list[int]] = {}
            ended: set[int] = set()

            def step(result) -> bool:
                nonlocal finished
                if result.batch_id in ended:
                    return True
                row = written.setdefault(result.batch_id, [])
                row.append(result.token_id)
                end = result.is_last or result.token_id in self._eos
                if (
                    not end
                    and stop
                    and stop in self.tokenizer.decode(row[-window:], skip_special_tokens=True)
                ):
                    end = True
                if end:
                    ended.add(result.batch_id)
                    finished += 1
                    if progress:
                        progress(finished, len(ids), time.perf_counter() - start)
                return end

            # Held here too: the callback is called (and released) on CTranslate2's worker thread, which must
            # not drop the last reference of a Python object (one unexplained abort was seen in testing).
            self._callback = step
            results = self.generator.generate_batch(
                [self.tokenizer.convert_ids_to_tokens(list(ids[i])) for i in group],
                # Sorted by length and cut into batches of max_batch_size inside; finished rows leave the batch.
                max_batch_size=batch_size,
                beam_size=1,
                sampling_topk=1,
                max_length=max_new_tokens,
                # The prompt is prefilled at once, not re-generated token by token.
                include_prompt_in_result=False,
                end_token=sorted(self._eos),
                callback=step if (stop or progress) else None,
            )
            for i, r in zip(group, results, strict=True):
                out[i] = list(r.sequences_ids[0])

        # CTranslate2 4.8.5 decodes the longer rows of a batch wrongly when its shortest prompt is one token
        # (tests/unit/test_ct2_engine.py), so one-token prompts decode in a call of their own. Inside a call
        # CTranslate2 sorts by length and cuts batches of `batch_size` itself (bucketing by length spread
        # measured slower: README, bench_engine).
        single = [i for i in range(len(ids)) if len(ids[i]) == 1]
        for group in (single, [i for i in range(len(ids)) if len(ids[i]) > 1]):
            if group:
                run(group)
        return out

    def _torch_generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        batch_size: int,
        stop: str | None,
        progress: Callable[[int, int, float], None] | None,
        copy_sources: Sequence[str],
    ) -> list[str]:
        if self._torch_lm is None:
            raise ValueError(
                "copy-constrained decoding needs a per-step logits processor, which CTranslate2 does not "
                "take; this CT2LM has no torch model to fall back on (pass torch_lm)"
            )
        if not self.torch_fallback_prompts:
            log.warning(
                "%s: copy-constrained decoding is not possible in CTranslate2 (no per-step logits "
                "processor); these prompts are decoded by the torch fp32 loop instead",
                self.name,
            )
        lm = self._torch_lm()
        before, seconds, forced = lm.stats.new_tokens, lm.stats.seconds, lm.stats.forced_tokens
        out = lm.generate(
            list(prompts),
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            stop=stop,
            progress=progress,
            copy_sources=copy_sources,
        )
        self.torch_fallback_prompts += len(prompts)
        self.stats.prompts += len(prompts)
        self.stats.new_tokens += lm.stats.new_tokens - before
        self.stats.seconds += lm.stats.seconds - seconds
        self.stats.forced_tokens += lm.stats.forced_tokens - forced
        return out
