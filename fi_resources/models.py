"""The parts of a profile, built from its choices: models loaded once per process (`ModelStore`) and the
backends, teachers and judges made from them (`Parts`). Plain Python: the Dagster resource in
`fi_resources.resources` only configures a `Parts`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from filelock import FileLock

from fi_resources.backends import Backend, HTTPBackend, HTTPConfig, LocalBackend
from fi_resources.cache import CachedBackend, ResponseCache
from fi_resources.encoder import Encoder, materialize_tiny_encoder, minilm_dir
from fi_resources.judge import FlowJudge, LikelihoodJudge, SlotTyper
from fi_resources.llm_teacher import PromptedTeacher
from fi_resources.lm import CausalLM, materialize_smollm2, materialize_tiny_lm
from fi_resources.lm.ct2 import CT2LM, check_engine
from fi_resources.parts import Judge, ValueTyper
from fi_resources.profiles import (
    PACKAGED_MINILM,
    PACKAGED_SMOLLM2,
    TINY_RANDOM_ENCODER,
    TINY_RANDOM_LM,
    Profile,
)
from fi_resources.ray_engine import (
    ActorPool,
    RayBackend,
    RayEncoder,
    RayJudge,
    RaySettings,
    RayTyper,
)
from fi_resources.settings import TeacherSettings
from fi_resources.teacher import WeakSupervisionTeacher

ROLES = ("teacher", "judge", "genericizer", "instantiator")
STUDENT_ROLES = ("genericizer", "instantiator")

# Loaded models by (kind, path), shared by every step of a process: a model loads once.
_LOADED: dict[tuple[str, str], object] = {}

# Where each packaged or random source is materialized (a folder under the model cache), or found.
_LM_SOURCES: dict[str, Callable[[Path], Path]] = {
    PACKAGED_SMOLLM2: lambda cache: materialize_smollm2(cache / "smollm2-135m-instruct"),
    TINY_RANDOM_LM: lambda cache: materialize_tiny_lm(cache / "tiny-llama"),
}
_ENCODER_SOURCES: dict[str, Callable[[Path], Path]] = {
    PACKAGED_MINILM: lambda cache: minilm_dir(),
    TINY_RANDOM_ENCODER: lambda cache: materialize_tiny_encoder(cache / "tiny-encoder"),
}


class ModelStore:
    """Loads the profile's base LM and encoder (or a fine-tuned copy by path) once per process.

    `trust_remote_code` lets a model run the code its folder or hub repository ships (a custom architecture,
    tokenizer or sentence-transformers module); off unless the user turns it on. Fine-tuned copies inherit
    the base model's code, so they load under the same choice."""

    def __init__(
        self,
        base_lm: str,
        encoder: str,
        cache_dir: Path,
        trust_remote_code: bool = False,
        student_engine: str = "torch",
        student_compute_type: str = "int8",
    ):
        check_engine(student_engine, student_compute_type)
        self.base_lm, self.base_encoder = base_lm, encoder
        self.cache_dir = cache_dir
        self.trust_remote_code = trust_remote_code
        self.student_engine, self.student_compute_type = student_engine, student_compute_type

    def _source_path(self, name: str, sources: dict[str, Callable[[Path], Path]]) -> Path:
        if name not in sources:
            return Path(name)  # a hub name or a local folder
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Parallel runs may both find the cache empty: one builds it, the other waits.
        with FileLock(str(self.cache_dir / "build.lock")):
            return sources[name](self.cache_dir)

    def base_lm_path(self) -> Path:
        return self._source_path(self.base_lm, _LM_SOURCES)

    def base_encoder_path(self) -> Path:
        return self._source_path(self.base_encoder, _ENCODER_SOURCES)

    def lm(self, path: str | Path | None = None) -> CausalLM:
        """A shared LM for inference: the base model, or a fine-tuned student at `path`."""
        key = str(path or self.base_lm_path())
        return _shared("language model", key, lambda: self._causal_lm(key, name=Path(key).name))

    def student_lm(self, path: str | Path) -> CausalLM | CT2LM:
        """A fine-tuned student for inference on the `student_engine`: the torch model, or its CTranslate2
        copy (converted once into the model cache; copy-constrained calls fall back to the torch model)."""
        if self.student_engine == "torch":
            return self.lm(path)
        key, ct = str(path), self.student_compute_type
        return _shared(
            f"ctranslate2 {ct} model",
            key,
            lambda: CT2LM(
                key,
                self.cache_dir,
                ct,
                name=Path(key).name,
                torch_lm=lambda: self.lm(key),
                trust_remote_code=self.trust_remote_code,
            ),
        )

    def fresh_lm(self) -> CausalLM:
        """An unshared copy of the base LM to fine-tune (fine-tuning mutates weights)."""
        base = str(self.base_lm_path())
        return _load("language model", base, lambda: self._causal_lm(base))

    def encoder(self, path: str | Path | None = None) -> Encoder:
        key = str(path or self.base_encoder_path())
        return _shared("encoder", key, lambda: self._encoder(key))

    def trainable_encoder(self, path: str | Path | None = None) -> Encoder:
        """An unshared encoder (the base one, or the one at `path`): training and pooling swaps mutate it."""
        key = str(path or self.base_encoder_path())
        return _load("encoder", key, lambda: self._encoder(key))

    def tokenizer(self):
        """The base LM's tokenizer: counts tokens for the budget and tokenizes pre-training text."""
        from transformers import AutoTokenizer

        key = str(self.base_lm_path())
        trust = self.trust_remote_code
        return _shared("tokenizer", key, lambda: AutoTokenizer.from_pretrained(key, trust_remote_code=trust))

    def _causal_lm(self, path: str, name: str | None = None) -> CausalLM:
        return CausalLM(path, name=name, trust_remote_code=self.trust_remote_code)

    def _encoder(self, path: str) -> Encoder:
        return Encoder(path, trust_remote_code=self.trust_remote_code)

    def token_counter(self) -> Callable[[str], int]:
        """Tokens of a text under the base LM's tokenizer, no special tokens (the token-for-token budget's unit)."""
        tok = self.tokenizer()
        return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _shared(kind: str, key: str, loader: Callable[[], object]):
    if (kind, key) not in _LOADED:
        _LOADED[(kind, key)] = _load(kind, key, loader)
    return _LOADED[(kind, key)]


def _load(kind: str, name: str, loader: Callable[[], object]):
    """Load a model; a hub name that cannot be fetched (offline, gated, misspelt), or a model that needs its
    own code while trust_remote_code is off, fails with the fix."""
    try:
        return loader()
    except OSError as exc:
        if Path(name).exists():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        hint = (
            "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set, so it must already be in the Hugging Face cache "
            f"(`huggingface-cli download {name}` on a connected machine)"
            if offline
            else "check the name, your network and (for gated models) `huggingface-cli login`"
        )
        raise RuntimeError(f"cannot load the {kind} {name!r} by name: {hint}. Cause: {exc}") from exc
    except ValueError as exc:
        # Both transformers and sentence-transformers refuse a model's own code with this advice.
        if "trust_remote_code=True" not in str(exc):
            raise
        raise RuntimeError(
            f"the {kind} {name!r} needs to run code of its own (shipped with the model, not part of any "
            f"installed package), and running a model's code is off by default: only if you trust it, set "
            f"the models resource's trust_remote_code: true (or FI_TRUST_REMOTE_CODE=1). Cause: {exc}"
        ) from exc


@dataclass(frozen=True)
class Endpoints:
    """Where served roles are reached, and how hard to try. The API key comes from the environment only."""

    teacher_url: str = ""
    judge_url: str = ""  # default: teacher_url
    student_url: str = ""  # a server holding copies of the fine-tuned students, under their artifact paths
    teacher_tokenizer: str = ""  # formats prefix-forced teacher prompts (default: the served teacher's name)
    concurrency: int = 8
    timeout_s: float = 120.0  # one request, body included (also the longest wait for the next bytes)
    total_deadline_s: float = 600.0  # one prompt, retries included
    max_retries: int = 5


# Actor pools by part, shared by every step of a process while it stays connected to one Ray cluster.
_POOLS: dict[tuple, ActorPool] = {}


def _local_backend(store: ModelStore, role: str, path: str | Path | None, version: str) -> LocalBackend:
    return LocalBackend(
        # A decode step costs about the same for 16 or 64 rows on CPU (bench_generation), so batches are
        # wide; the response cache hands over chunks of up to 64 prompts.
        store.student_lm(path) if role in STUDENT_ROLES else store.lm(path),
        batch_size=32,
        version=version,
    )


def _likelihood_judge(store: ModelStore) -> LikelihoodJudge:
    return LikelihoodJudge(store.lm(), store.encoder())


def _slot_typer(store: ModelStore) -> SlotTyper:
    return SlotTyper(store.lm())


class Parts:
    """Backends, teachers and judges of one profile: `backend(role)`, `teacher(job, settings)`, `judge()`.

    With `ray` settings, the parts that hold an in-process model (local backends, the embedded judge, the
    inference encoder, the typer) run on a pool of Ray actors (`fi_resources.ray_engine`); HTTP backends,
    the response cache and everything else stay in this process."""

    def __init__(
        self,
        profile: Profile,
        store: ModelStore,
        endpoints: Endpoints,
        served_models: dict[str, str],
        response_cache: Path | None,
        ray: RaySettings | None = None,
    ):
        self.profile, self.store, self.endpoints = profile, store, endpoints
        self.served_models = served_models
        self.response_cache = response_cache
        self.ray = ray

    def _in_process(self, key: tuple, builder: Callable[[], object], on_ray: Callable[[ActorPool], object]):
        """`builder()` here, or `on_ray(pool)` over actors that each run `builder()` (a picklable partial)."""
        if self.ray is None:
            return builder()
        store = self.store
        which = (store.base_lm, store.base_encoder, store.student_engine, store.student_compute_type)
        full_key = (*key, *which, str(store.cache_dir), store.trust_remote_code, self.ray)
        if full_key not in _POOLS:
            _POOLS[full_key] = ActorPool(builder, self.ray, name=" ".join(map(str, key)))
        return on_ray(_POOLS[full_key])

    # ---- generation backends ------------------------------------------------------------------
    def backend(
        self, role: str, path: str | Path | None = None, version: str = "", chat: bool = False
    ) -> Backend:
        """The text generator of a role. `path` (students): the fine-tuned model folder; `version`: its data
        version (else the cache hashes the weights); `chat`: a served teacher through the chat endpoint (the
        prompted teacher) instead of raw completions. Wrapped in the response cache unless turned off."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
        if role in STUDENT_ROLES and path is None:
            raise ValueError(f"role {role!r} needs the path of the fine-tuned student")
        inner = self._http_backend(role, path, version, chat) or self._in_process(
            ("backend", role, str(path), version),
            partial(_local_backend, self.store, role, path, version),
            RayBackend,
        )
        if self.response_cache is None:
            return inner
        return CachedBackend(inner, ResponseCache(self.response_cache))

    def _http_backend(
        self, role: str, path: str | Path | None, version: str, chat: bool = False
    ) -> HTTPBackend | None:
        ep = self.endpoints
        common = dict(
            concurrency=ep.concurrency,
            timeout_s=ep.timeout_s,
            request_deadline_s=ep.timeout_s,
            total_deadline_s=ep.total_deadline_s,
            max_retries=ep.max_retries,
        )
        common["api_key"] = os.environ.get("FI_LLM_API_KEY", "")  # a secret: from the environment only
        if role in STUDENT_ROLES:
            if not ep.student_url:
                return None  # fine-tuned students generate in-process
            # vLLM (and fi_resources.serve) name a served folder by its path.
            return HTTPBackend(HTTPConfig(ep.student_url, str(path), version=version, **common))
        if role not in self.profile.served_roles:
            return None
        model = self.served_models[role]
        url = ep.teacher_url if role == "teacher" else ep.judge_url or ep.teacher_url
        if not url:
            raise ValueError(
                f"profile {self.profile.name!r} serves the {role} ({model}) from an OpenAI-compatible server: "
                f"set ModelsResource.llm_base_url or FI_LLM_BASE_URL (e.g. http://gpu-host:8000/v1 of "
                f"`vllm serve {model}`)"
            )
        teacher = role == "teacher" and not chat  # raw completions: the rule teacher's prefix-forced prompts
        return HTTPBackend(
            HTTPConfig(
                url,
                model,
                endpoint="completions" if teacher else "chat",
                tokenizer=(ep.teacher_tokenizer or model) if teacher else "",
                trust_remote_code=self.store.trust_remote_code,
                version=os.environ.get(f"FI_{role.upper()}_VERSION", ""),
                **common,
            )
        )

    # ---- teachers and judges -------------------------------------------------------------------
    def teacher(self, job: str, settings: TeacherSettings):
        """The teacher chosen for `job` (genericize, describe, compatibility, instantiate): the setting's
        choice, else the profile's. Returns an object with that job's interface (`fi_resources.parts`)."""
        choice = self.profile.teacher_for(job, getattr(settings, job))
        if choice not in TEACHERS:
            raise ValueError(f"unknown teacher {choice!r} for {job}; teachers are {', '.join(TEACHERS)}")
        return TEACHERS[choice](self, settings)

    def typer(self) -> ValueTyper:
        """Types values with the base LM ("X is a kind of"), as the embedded judge's slot check does."""
        return self._in_process(("typer",), partial(_slot_typer, self.store), RayTyper)

    def encoder(self, path: str | Path | None = None) -> Encoder | RayEncoder:
        """An encoder for inference only (`encode`, `encode_multi`): the base one, or the one at `path`."""
        return self._in_process(("encoder", str(path)), partial(self.store.encoder, path), RayEncoder)

    def judge(self, kind: str = "auto") -> Judge:
        """'likelihood': the embedded judge (validated by `judge_validation`). 'flow-judge': the paper's
        Flow-Judge prompt through the judge role's backend (a 135M model cannot follow it). 'auto': the
        profile's judge."""
        kind = self.profile.judge if kind == "auto" else kind
        if kind == "likelihood":
            return self._in_process(("judge",), partial(_likelihood_judge, self.store), RayJudge)
        if kind == "flow-judge":
            backend = self.backend("judge")
            names = self.model_names()
            return FlowJudge(backend, name=f"flow-judge@{names.get('judge') or names['lm']}",
                             format_prompt=backend.chat_prompt)  # fmt: skip
        raise ValueError(f"unknown judge {kind!r}; choose 'auto', 'likelihood' or 'flow-judge'")

    def model_names(self) -> dict[str, str]:
        """The models that shape outputs, by role (recorded in the catalog and the dataset card)."""
        names = {
            "profile": self.profile.name,
            "lm": self.profile.lm_label if self.store.base_lm == self.profile.base_lm else self.store.base_lm,
            "encoder": self.profile.encoder_label
            if self.store.base_encoder == self.profile.encoder
            else self.store.base_encoder,
        }
        for role in sorted(self.profile.served_roles):
            names[role] = self.served_models[role]
        return names


def _rules_teacher(parts: Parts, settings: TeacherSettings) -> WeakSupervisionTeacher:
    # The teacher's completions go through the role's backend (in-process or served, cached).
    return WeakSupervisionTeacher(
        parts.backend("teacher"),
        parts.store.encoder(),
        settings.fill_threshold,
        settings.answer_threshold,
        settings.answer_chars,
    )


def _llm_teacher(parts: Parts, settings: TeacherSettings) -> PromptedTeacher:
    # Chat endpoint when served: the server applies the teacher model's own chat template.
    return PromptedTeacher(
        parts.backend("teacher", chat=True), settings.llm_structured_output, settings.llm_min_compatible_score
    )


# Teacher implementations by the name a profile or TeacherSettings chooses.
TEACHERS: dict[str, Callable[[Parts, TeacherSettings], object]] = {
    "rules": _rules_teacher,
    "llm": _llm_teacher,
}
