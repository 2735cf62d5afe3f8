"""Dagster resources: the warehouse, and the models of the chosen profile (a thin configuration of
`fi_resources.models.Parts`). The settings sections are resources too (`fi_resources.settings`).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import ConfigDict, ValidationInfo, field_validator

from fi_resources import settings as st
from fi_resources.backends import redact_url
from fi_resources.models import Endpoints, ModelStore, Parts
from fi_resources.profiles import get_profile
from fi_resources.ray_engine import RaySettings
from fi_resources.warehouse import Warehouse, default_home


class WarehouseResource(dg.ConfigurableResource):
    """Where tables (Parquet + DuckDB views), artifacts, caches and the inbox live. Empty = $FI_HOME or ./.fi"""

    home: str = ""

    @property
    def path(self) -> Path:
        return Path(self.home).resolve() if self.home else default_home()

    def get(self) -> Warehouse:
        return Warehouse(self.path)


ENGINES = ("", "local", "ray")
# The environment the Ray workers get from the process that joins the cluster.
RAY_WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "FI_MODEL_CACHE")


class ModelsResource(dg.ConfigurableResource):
    """The models of one profile (`fi_resources.profiles`): which base LM, encoder, judge and teachers, and
    where served roles are reached. Empty fields fall back to the FI_* environment variables named below.

    Credentials come from the environment only: Dagster records every configured field in its run storage
    (the job snapshot), so a URL field with `user:password@` is refused; FI_LLM_BASE_URL (read when a step
    runs, never recorded) may carry them, or FI_LLM_API_KEY a bearer token.
    """

    # A refused value must not be echoed by pydantic's error text.
    model_config = ConfigDict(hide_input_in_errors=True)

    profile: str = "embedded"
    warehouse: WarehouseResource  # the data home: the response cache and (by default) the model cache
    llm_base_url: str = ""  # teacher endpoint, e.g. http://gpu-host:8000/v1 (FI_LLM_BASE_URL)
    teacher_model: str = ""  # served teacher name (FI_TEACHER_MODEL)
    # Tokenizer whose chat template formats prefix-forced teacher prompts (FI_TEACHER_TOKENIZER; default:
    # teacher_model, loaded by name)
    teacher_tokenizer: str = ""
    judge_base_url: str = ""  # judge endpoint (FI_JUDGE_BASE_URL; default: llm_base_url)
    judge_model: str = ""  # served judge name (FI_JUDGE_MODEL)
    # A server holding copies of the fine-tuned students, served under their artifact paths (FI_STUDENT_BASE_URL)
    student_base_url: str = ""
    encoder_name: str = ""  # encoder instead of the profile's (FI_ENCODER)
    student_base: str = ""  # base LM instead of the profile's (FI_STUDENT_BASE)
    llm_concurrency: int = 8  # HTTP requests in flight per backend
    llm_timeout_s: float = 120.0  # wall-clock limit of one HTTP request, the answer body included
    llm_total_deadline_s: float = 600.0  # limit of one prompt across its retries and backoff waits
    llm_max_retries: int = 5
    response_cache: bool = True  # answer repeated prompts from $FI_HOME/cache/responses.sqlite
    # Let a user-named model run the code it ships (custom architecture, tokenizer or sentence-transformers
    # module): off unless asked for, here or with FI_TRUST_REMOTE_CODE=1. Our own folders never need it.
    trust_remote_code: bool = False
    # How the in-process students (genericizer, instantiator) decode (FI_STUDENT_ENGINE; default "torch", our
    # fp32 loop): "ctranslate2" runs a copy converted once into the model cache at `student_compute_type`
    # (FI_STUDENT_COMPUTE_TYPE: int8, int8_float32 or float32). Copy-constrained calls stay on torch (README).
    student_engine: str = ""
    student_compute_type: str = ""
    # Where the in-process models run (FI_ENGINE): "local" (this process; the default) or "ray": each model
    # part on `ray_workers` Ray actors of the cluster RAY_ADDRESS names (a new local one without it), joined
    # through dagster-ray when a step starts. Stage logic, the response cache and HTTP backends stay here.
    engine: str = ""
    ray_workers: int = 2
    ray_cpus_per_worker: float = 1.0
    ray_gpus_per_worker: float = 0.0

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES[1:])} (empty: FI_ENGINE)")
        return engine

    @field_validator("llm_base_url", "judge_base_url", "student_base_url")
    @classmethod
    def _no_credentials(cls, url: str, info: ValidationInfo) -> str:
        if url != redact_url(url):
            env = f"FI_{info.field_name.removesuffix('_base_url').upper()}_BASE_URL"
            raise ValueError(
                f"{info.field_name} {redact_url(url)} carries credentials (user:password@), and Dagster "
                f"stores resource config in its run storage: leave {info.field_name} empty and set {env} "
                "in the environment instead (credentials there are never recorded), or FI_LLM_API_KEY"
            )
        return url

    def _value(self, name: str, env: str) -> str:
        return getattr(self, name) or os.environ.get(env, "")

    def ray_settings(self) -> RaySettings | None:
        """The actor pools' settings when the engine is Ray, else None."""
        engine = self._value("engine", "FI_ENGINE") or "local"
        if engine not in ENGINES:
            raise ValueError(f"FI_ENGINE={engine!r} is not one of {', '.join(ENGINES[1:])}")
        if engine == "local":
            return None
        return RaySettings(self.ray_workers, self.ray_cpus_per_worker, self.ray_gpus_per_worker)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["ModelsResource"]:
        if self.ray_settings() is None:
            yield self
            return
        from dagster_ray import LocalRay

        # LocalRay joins the cluster RAY_ADDRESS names (else starts one here) and leaves it after the step.
        # The workers get the offline switches; never a credential (HTTP backends stay in this process).
        env = {k: os.environ[k] for k in RAY_WORKER_ENV if k in os.environ}
        cluster = LocalRay(env_vars=env, ray_init_options={"log_to_driver": False})
        with cluster.yield_for_execution(context):
            yield self

    @property
    def cache_dir(self) -> Path:
        # Derived model copies (dequantised GGUF, tiny random models) can be shared between data homes.
        shared = os.environ.get("FI_MODEL_CACHE")
        return Path(shared).resolve() if shared else self.warehouse.path / "cache"

    def parts(self) -> Parts:
        profile = get_profile(self.profile)
        served = {
            role: self._value(f"{role}_model", f"FI_{role.upper()}_MODEL") or model
            for role, model in profile.served_models.items()
        }
        store = ModelStore(
            self._value("student_base", "FI_STUDENT_BASE") or profile.base_lm,
            self._value("encoder_name", "FI_ENCODER") or profile.encoder,
            self.cache_dir,
            trust_remote_code=self.trust_remote_code or os.environ.get("FI_TRUST_REMOTE_CODE") == "1",
            student_engine=self._value("student_engine", "FI_STUDENT_ENGINE") or "torch",
            student_compute_type=self._value("student_compute_type", "FI_STUDENT_COMPUTE_TYPE") or "int8",
        )
        endpoints = Endpoints(
            teacher_url=self._value("llm_base_url", "FI_LLM_BASE_URL"),
            judge_url=self._value("judge_base_url", "FI_JUDGE_BASE_URL"),
            student_url=self._value("student_base_url", "FI_STUDENT_BASE_URL"),
            teacher_tokenizer=self._value("teacher_tokenizer", "FI_TEACHER_TOKENIZER"),
            concurrency=self.llm_concurrency,
            timeout_s=self.llm_timeout_s,
            total_deadline_s=self.llm_total_deadline_s,
            max_retries=self.llm_max_retries,
        )
        cache = self.warehouse.path / "cache" / "responses.sqlite" if self.response_cache else None
        return Parts(profile, store, endpoints, served, cache, ray=self.ray_settings())

    def fingerprint(self) -> dict:
        """What shapes outputs: the models by role and the profile's teacher choices (not endpoints)."""
        parts = self.parts()
        prints = {
            "models": parts.model_names(),
            "teachers": parts.profile.teachers,
            "judge": parts.profile.judge,
        }
        store = parts.store
        if store.student_engine != "torch":
            # Quantised students write other outputs. Left out for torch, so code versions stay as they were.
            prints["student_engine"] = f"{store.student_engine}-{store.student_compute_type}"
        return prints


# ---- settings sections as resources (fields and meaning: fi_resources/settings.py) ------------------------
class InboxSettingsResource(dg.ConfigurableResource, st.InboxSettings):
    pass


class DocumentSettingsResource(dg.ConfigurableResource, st.DocumentSettings):
    pass


class TeacherSettingsResource(dg.ConfigurableResource, st.TeacherSettings):
    pass


class StudentSettingsResource(dg.ConfigurableResource, st.StudentSettings):
    pass


class TemplateBankSettingsResource(dg.ConfigurableResource, st.TemplateBankSettings):
    pass


class RetrievalSettingsResource(dg.ConfigurableResource, st.RetrievalSettings):
    pass


class MatchingSettingsResource(dg.ConfigurableResource, st.MatchingSettings):
    pass


class InstantiationSettingsResource(dg.ConfigurableResource, st.InstantiationSettings):
    pass


class JudgeSettingsResource(dg.ConfigurableResource, st.JudgeSettings):
    pass


class CorpusSettingsResource(dg.ConfigurableResource, st.CorpusSettings):
    pass


class PretrainSettingsResource(dg.ConfigurableResource, st.PretrainSettings):
    pass


SETTINGS_RESOURCES: dict[str, type[dg.ConfigurableResource]] = {
    "inbox": InboxSettingsResource,
    "document_settings": DocumentSettingsResource,
    "teacher_settings": TeacherSettingsResource,
    "student_settings": StudentSettingsResource,
    "template_bank_settings": TemplateBankSettingsResource,
    "retrieval_settings": RetrievalSettingsResource,
    "matching_settings": MatchingSettingsResource,
    "instantiation_settings": InstantiationSettingsResource,
    "judge_settings": JudgeSettingsResource,
    "corpus_settings": CorpusSettingsResource,
    "pretrain_settings": PretrainSettingsResource,
}
assert SETTINGS_RESOURCES.keys() == st.SECTIONS.keys()


def settings_resources(**overrides: object) -> dict[str, dg.ConfigurableResource]:
    """Every settings section as a resource, with flat `overrides` (`seed` goes to every section)."""
    grouped = st.group_overrides(overrides)
    return {key: cls(**grouped[key]) for key, cls in SETTINGS_RESOURCES.items()}


def profile_from_env() -> str:
    return os.environ.get("FI_PROFILE", "embedded")
