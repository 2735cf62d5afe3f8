"""Dagster resources: the warehouse, the models of the chosen profile, and pipeline settings.

Heavy models load once per process (a module-level cache keyed by path), never at import time.
"""

import os
from pathlib import Path
from typing import Literal

import dagster as dg
from filelock import FileLock

from fi_resources.encoder import Encoder, materialize_tiny_encoder, minilm_dir
from fi_resources.lm import CausalLM, materialize_smollm2, materialize_tiny_lm
from fi_resources.teacher import LikelihoodJudge, WeakSupervisionTeacher
from fi_resources.warehouse import Warehouse, default_home

PROFILES = ("embedded", "tiny", "paper")
_CACHE: dict[tuple[str, str], object] = {}


def fi_home(configured: str = "") -> Path:
    return Path(configured).resolve() if configured else default_home()


class WarehouseResource(dg.ConfigurableResource):
    """Where tables (Parquet + DuckDB views), artifacts and the catalog live. Empty = $FI_HOME or ./.fi"""

    home: str = ""

    def get(self) -> Warehouse:
        return Warehouse(fi_home(self.home))


class ModelsResource(dg.ConfigurableResource):
    """The models of one profile, by role: teacher, student base, encoder, judge."""

    profile: str = "embedded"
    home: str = ""

    def _check(self) -> None:
        if self.profile == "paper":
            raise NotImplementedError(
                "profile 'paper' (BGE-M3, a vLLM-served teacher, Flow-Judge) needs the OpenAI-compatible LLM "
                "backend, which is not built yet; use 'embedded' or 'tiny'"
            )
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {PROFILES}")

    @property
    def cache_dir(self) -> Path:
        # Derived model copies (dequantised GGUF, tiny random models) can be shared between data homes.
        shared = os.environ.get("FI_MODEL_CACHE")
        path = Path(shared).resolve() if shared else fi_home(self.home) / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def base_lm_path(self) -> Path:
        self._check()
        # Parallel runs may both find the cache empty: one builds it, the other waits.
        with FileLock(str(self.cache_dir / "build.lock")):
            return self._base_lm_path()

    def _base_lm_path(self) -> Path:
        if self.profile == "tiny":
            return materialize_tiny_lm(self.cache_dir / "tiny-llama")
        return materialize_smollm2(self.cache_dir / "smollm2-135m-instruct")

    def base_encoder_path(self) -> Path:
        self._check()
        if self.profile == "tiny":
            with FileLock(str(self.cache_dir / "build.lock")):
                return materialize_tiny_encoder(self.cache_dir / "tiny-encoder")
        return minilm_dir()

    def lm(self, path: str | Path | None = None) -> CausalLM:
        """A shared (cached) LM for inference: the base model, or a fine-tuned student at `path`."""
        key = ("lm", str(path or self.base_lm_path()))
        if key not in _CACHE:
            _CACHE[key] = CausalLM(key[1], name=Path(key[1]).name)
        return _CACHE[key]  # type: ignore[return-value]

    def tokenizer(self):
        """The base LM's tokenizer: counts tokens for the budget and tokenizes pre-training text."""
        key = ("tokenizer", str(self.base_lm_path()))
        if key not in _CACHE:
            from transformers import AutoTokenizer

            _CACHE[key] = AutoTokenizer.from_pretrained(key[1])
        return _CACHE[key]

    def fresh_lm(self) -> CausalLM:
        """An uncached copy of the base LM to fine-tune (fine-tuning mutates weights)."""
        return CausalLM(self.base_lm_path())

    def encoder(self, path: str | Path | None = None) -> Encoder:
        key = ("encoder", str(path or self.base_encoder_path()))
        if key not in _CACHE:
            _CACHE[key] = Encoder(key[1])
        return _CACHE[key]  # type: ignore[return-value]

    def fresh_encoder(self) -> Encoder:
        return Encoder(self.base_encoder_path())

    def teacher_for(self, settings: "PipelineSettings") -> WeakSupervisionTeacher:
        return self.teacher(settings.teacher_fill_threshold, settings.teacher_answer_threshold)

    def teacher(self, fill_threshold: float = 0.15, answer_threshold: float = 0.3) -> WeakSupervisionTeacher:
        return WeakSupervisionTeacher(self.lm(), self.encoder(), fill_threshold, answer_threshold)

    def judge(self) -> LikelihoodJudge:
        return LikelihoodJudge(self.lm(), self.encoder())

    def model_names(self) -> dict[str, str]:
        base = "SmolLM2-135M-Instruct" if self.profile == "embedded" else "tiny-llama (random)"
        enc = "all-MiniLM-L6-v2" if self.profile == "embedded" else "tiny-bert (random)"
        return {"profile": self.profile, "lm": base, "encoder": enc}


class PipelineSettings(dg.ConfigurableResource):
    """Sizes, thresholds and seeds. Defaults suit the embedded demo on 2 CPU cores (about 15 minutes)."""

    query_folder: str = ""  # extra user query files (JSONL/Parquet/CSV); empty = $FI_HOME/inbox/queries
    document_folder: str = ""  # document shard files; empty = $FI_HOME/inbox/documents
    max_queries: int = 0  # queries the genericizer runs over (0 = all)
    silver_templates: int = 96  # queries the teacher genericizes for the student
    genericizer_epochs: int = 2
    student_lr: float = 1e-4
    # Share of top decoder layers fine-tuned (the rest frozen). Measured on the demo: training the top half
    # is 1.5x faster but the genericizer then writes 36 valid templates of 395 instead of 217.
    student_train_top_layers: float = 1.0
    # > 0: train LoRA adapters of this rank (peft) instead of the weights, merged into them before saving;
    # 0 = full fine-tune. LoRA usually wants a higher student_lr (~1e-3).
    student_lora_rank: int = 0
    builtin_shards: int = 3  # Wikipedia shards written into the document folder when it is empty
    docs_per_shard: int = 10
    max_document_chars: int = 1200
    embedder_top_k: int = 5
    embedder_epochs: int = 1
    teacher_fill_threshold: float = 0.15  # cosine(slot description, filler) the teacher accepts
    teacher_answer_threshold: float = 0.30  # cosine(instruction, excerpt) the teacher accepts
    # Cosine for the tuned all-MiniLM-L6-v2 (paper: 0.865 with its BGE-M3 and an 18M-template bank). With
    # a bank of a few hundred chatbot questions, the median document's best template scores ~0.28; at
    # 0.18 all 29 demo documents got at least one match (measured with the 199-template demo bank).
    match_threshold: float = 0.18
    matches_per_document: int = 6
    silver_instantiations: int = 48
    incompatible_fraction: float = 0.05
    instantiator_epochs: int = 2
    min_grounding: float = 0.80
    keep_score: int = 4
    pretrain_hidden: int = 128
    pretrain_layers: int = 2
    # The demo corpus is ~2k tokens: measured held-out loss was best at 10 passes of {4, 10, 20, 40} (40 overfits
    # to worse than uniform). Both checkpoints get the same number of passes over the same token count.
    pretrain_epochs: int = 10
    seed: int = 0

    def inbox(self, kind: Literal["queries", "documents"], home: str = "") -> Path:
        configured = self.query_folder if kind == "queries" else self.document_folder
        path = Path(configured) if configured else fi_home(home) / "inbox" / kind
        path.mkdir(parents=True, exist_ok=True)
        return path


TINY_SETTINGS = dict(
    max_queries=24,
    silver_templates=24,
    genericizer_epochs=1,
    builtin_shards=2,
    docs_per_shard=3,
    max_document_chars=600,
    embedder_top_k=3,
    teacher_fill_threshold=-1.0,
    teacher_answer_threshold=-1.0,
    match_threshold=-1.0,  # random encoders give arbitrary cosines: keep every candidate
    matches_per_document=2,
    silver_instantiations=8,
    instantiator_epochs=1,
    pretrain_hidden=32,
    pretrain_layers=1,
    pretrain_epochs=1,
)


def profile_from_env() -> str:
    return os.environ.get("FI_PROFILE", "embedded")
