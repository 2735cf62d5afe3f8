"""Per-stage settings sections, plain pydantic models (no Dagster): stage functions take them.

Each section is also a Dagster resource (`fi_resources.resources`) that an asset asks for by name, so the
settings that shape an asset's output are exactly the settings resources in its signature, and its code
version covers them (`fi_assets.versioning`). Defaults suit the embedded demo on 2 CPU cores.

A setting belongs to exactly one section, so a flat override (`passage_chars=700`, as the tests and
`build_resources` use it) finds its section by name; `seed` is every section's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel

from fi_resources.warehouse import default_home


class StageSettings(BaseModel):
    """Base of every settings section: all of them take the run's seed."""

    seed: int = 0

    def fingerprint(self) -> dict:
        """The values that shape outputs: all fields (a section holds nothing else)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class InboxSettings(StageSettings):
    """Where users drop query and document files (empty = under the data home)."""

    query_folder: str = ""  # extra user query files (JSONL/Parquet/CSV); empty = $FI_HOME/inbox/queries
    document_folder: str = ""  # document shard files; empty = $FI_HOME/inbox/documents
    builtin_shards: int = 3  # Wikipedia shards written into the document folder when it is empty
    docs_per_shard: int = 10

    def folder(self, kind: Literal["queries", "documents"], home: str | Path = "") -> Path:
        configured = self.query_folder if kind == "queries" else self.document_folder
        path = Path(configured) if configured else (Path(home) if home else default_home()) / "inbox" / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fingerprint(self) -> dict:
        # Nothing here shapes an asset's output: folders only say where the input files are (the files are
        # the data), and the built-in shards are written by the sensor and the demo, not by an asset.
        return {}


class DocumentSettings(StageSettings):
    """How shard files become passages: the rows every later stage calls documents."""

    # The encoder and instantiator windows: no passage is longer (MiniLM reads 256 tokens, ~1,200 chars).
    passage_chars: int = 1200
    # Shorter passages merge with a neighbour; a document shorter than this is dropped as too short.
    min_passage_chars: int = 200
    # A seeded sample per document, its lead passage included, to fit the demo's time (0 = all passages).
    passages_per_document: int = 2
    # Longer texts are split only up to a boundary before this length (counted as cut_documents).
    max_source_chars: int = 2_000_000
    # Longer titles are cut (counted in the documents metadata) before any model reads them.
    max_title_chars: int = 300


class TeacherSettings(StageSettings):
    """Which teacher each job uses ("" = the profile's choice) and the rule-based teacher's thresholds."""

    genericize: str = ""
    describe: str = ""
    compatibility: str = ""
    instantiate: str = ""
    fill_threshold: float = 0.15  # cosine(slot description, filler) the rule-based teacher accepts
    answer_threshold: float = 0.30  # cosine(instruction, excerpt) the rule-based teacher accepts
    answer_chars: int = 480  # the rule-based teacher widens its answer excerpt over following sentences
    llm_structured_output: bool = True  # the prompted teacher sends each job's JSON schema (response_format)
    llm_min_compatible_score: int = (
        4  # the prompted teacher's compatibility score (1–5) that labels compatible
    )


class StudentSettings(StageSettings):
    """How the students (genericizer, instantiator) are fine-tuned from the profile's base LM."""

    student_lr: float = 1e-4
    # Share of top decoder layers fine-tuned (the rest frozen); see the README for the measured trade-off.
    student_train_top_layers: float = 1.0
    # > 0: train LoRA adapters of this rank (peft), merged into the weights before saving; 0 = full fine-tune.
    student_lora_rank: int = 0
    # "bf16": bf16 autocast over fp32 master weights (accelerate), for GPU students; "fp32" as always.
    student_precision: Literal["fp32", "bf16"] = "fp32"
    # "auto" trains on a GPU when torch sees one, else the CPU; the model is then used on the CPU.
    student_device: Literal["auto", "cpu", "cuda"] = "auto"

    def fingerprint(self) -> dict:
        prints = super().fingerprint()
        # At their defaults these reproduce the fp32 CPU training they were added beside: code versions stay.
        for name in ("student_precision", "student_device"):
            if prints[name] == type(self).model_fields[name].default:
                prints.pop(name)
        return prints


class TemplateBankSettings(StageSettings):
    max_queries: int = 0  # queries the genericizer runs over (0 = all)
    silver_templates: int = 96  # queries the teacher genericizes for the student
    # Search-style questions the teacher writes about held-out packaged articles (2 passages each), added
    # to the real queries: no search log ships offline (offline-assets.md §3). 0 = real queries only.
    question_articles: int = 30
    genericizer_epochs: int = 2
    # A local copy of the released FineTemplates bank (a Parquet/JSONL file or a folder of them): when set,
    # `query_templates` imports it instead of running the genericizer (README "A released template bank").
    released_bank_path: str = ""
    released_bank_limit: int = 0  # rows read from the released bank (0 = all)
    # Imported templates must also pass `question_form_reason`, the bar the genericizer's outputs meet.
    released_question_form: bool = True
    # A genericized template must keep its query's words around the slots (logic/templates.follows_query): the
    # 135M student's rewrites of the rest of a question are nonsense (README). Imported banks are not checked.
    require_faithful_templates: bool = True

    def fingerprint(self) -> dict:
        prints = super().fingerprint()
        if self.require_faithful_templates:
            # On, as before the setting existed: query_templates' own code version marks the change.
            prints.pop("require_faithful_templates")
        if not self.released_bank_path:
            # Unset, the import settings shape nothing: code versions stay what they were before they existed.
            for name in ("released_bank_path", "released_bank_limit", "released_question_form"):
                prints.pop(name)
        return prints


class RetrievalSettings(StageSettings):
    """Embedder training (paper §2) and its evaluation."""

    embedder_top_k: int = 5
    embedder_epochs: int = 1
    # Gaussian pooling (paper §2: K=5 locals centred at k/(K+1) of the length, σ=0.05·T, α=1.0 pure local).
    pooling_num_local: int = 5
    pooling_sigma: float = 0.05
    pooling_alpha: float = 1.0
    heldout_fraction: float = 0.25  # seeded share of embedder_pairs documents kept out of training, for eval
    local_embedder_epochs: int = 1  # stage 2 (chunk-index labels)
    eval_max_documents: int = 6  # held-out documents retrieval_eval judges

    def pooling(self) -> tuple[int, float, float]:
        """(num_local, sigma, alpha) of the Gaussian pooling."""
        return self.pooling_num_local, self.pooling_sigma, self.pooling_alpha


class MatchingSettings(StageSettings):
    # Match cosine. None = the threshold calibrated on held-out teacher labels (recorded in the local_embedder
    # artifact); a number overrides it. Paper: 0.865 with its BGE-M3 and 18M templates.
    match_threshold: float | None = None
    # Used when calibration has too few held-out labels (the README gives the measured value's origin).
    fallback_match_threshold: float = 0.18
    matches_per_document: int = 6
    # A candidate is kept only if the passage contains at least this share of what its template asks besides
    # the slots (logic/templates.asked_words): a passage that never mentions "currency" cannot answer "What
    # currency is used in <fi>a country</fi>?". 0 = off. Of the audit set's labelled pairs whose answer has less
    # than all of what its template asks, nearly none is sensible (README), so all is asked of the passage.
    min_asked_coverage: float = 1.0
    # A candidate is kept only if the passage has the kind of answer its template asks for
    # (logic/answer_kind): a defining sentence for "What is <fi>a thing</fi>?", a year for "When …?".
    require_answer_shape: bool = True
    # A candidate is kept only if the passage's title is the kind of thing one of the template's slots asks for
    # (its head among the title's `title_type_top_k` most likely types, logic/slot_types.subject_fits): the
    # instantiator fills slots with the passage's subject, so "Which <fi>a fruit</fi> …?" on "Autism" gives a
    # pair the judge must reject. None = off.
    title_type_top_k: int | None = 3


class InstantiationSettings(StageSettings):
    silver_instantiations: int = 48
    incompatible_fraction: float = 0.05
    instantiator_epochs: int = 2
    # Give the instantiator <excerpt>, <...> and </excerpt> as single new tokens; off by default (README).
    markup_tokens: bool = False
    min_grounding: float = 0.80
    # An answer whose last excerpt stops mid-sentence runs on to that sentence's end if it is this near in the
    # document (logic/excerpts.finish_last_sentence); 0 = keep the student's span as written.
    finish_sentence_chars: int = 300
    # The student's excerpt markers may only copy document text (logic/copy_constraint.py; local backends).
    copy_constrained_excerpts: bool = True
    # Distillation rounds (paper §3: two). Round 2: the round-1 student instantiates `round2_candidates`
    # sampled matches, the judge keeps those scoring `keep_score`, and up to `round2_examples` of them,
    # balanced over answer length, slot count and topic (logic/stratify.py), retrain a fresh copy of the
    # base LM, with the silver set too when `round2_keep_silver`. 1 = the round-1 student is the instantiator.
    instantiator_rounds: int = 1
    round2_candidates: int = 192
    round2_examples: int = 48
    round2_keep_silver: bool = True

    def fingerprint(self) -> dict:
        prints = super().fingerprint()
        if self.instantiator_rounds == 1:
            # One round, as before the setting existed: the round-2 settings shape nothing.
            for name in ("instantiator_rounds", "round2_candidates", "round2_examples", "round2_keep_silver"):
                prints.pop(name)
        return prints


class JudgeSettings(StageSettings):
    judge: str = "auto"  # "likelihood", "flow-judge" or "auto" (the profile's judge)
    keep_score: int = 4  # pairs scoring this or more are kept (paper: 4 of 5)
    # Diversity: at most this share of a shard's passing pairs per template, and one pair per distinct answer.
    max_template_share: float = 0.02
    audit_labels: str = ""  # folder of hand-labelled pairs (empty = the project's audit/labels)
    # judge_audit's check: precision among kept pairs on the held-out audit split must reach this.
    judge_min_audit_precision: float = 0.8
    judge_check_pairs: int = 16  # correct pairs per source (silver, chatterbot) in the judge check set
    judge_min_win_rate: float = (
        0.80  # the check set's held-out half must rank correct over corrupted this often
    )


class CorpusSettings(StageSettings):
    """The token-for-token selection of kept pairs (paper §4): only the seed of its draws."""


class PretrainSettings(StageSettings):
    pretrain_hidden: int = 128
    pretrain_layers: int = 2
    # Both checkpoints get the same number of passes over the same token count (README: why 10).
    pretrain_epochs: int = 10


# Resource key → section. An asset asks for a section by this key.
SECTIONS: dict[str, type[StageSettings]] = {
    "inbox": InboxSettings,
    "document_settings": DocumentSettings,
    "teacher_settings": TeacherSettings,
    "student_settings": StudentSettings,
    "template_bank_settings": TemplateBankSettings,
    "retrieval_settings": RetrievalSettings,
    "matching_settings": MatchingSettings,
    "instantiation_settings": InstantiationSettings,
    "judge_settings": JudgeSettings,
    "corpus_settings": CorpusSettings,
    "pretrain_settings": PretrainSettings,
}


def section_of(field: str) -> str:
    """The resource key of the section that owns `field`."""
    owners = [key for key, cls in SECTIONS.items() if field in cls.model_fields and field != "seed"]
    if not owners:
        known = sorted({f for cls in SECTIONS.values() for f in cls.model_fields})
        raise ValueError(f"unknown setting {field!r}; settings are: {', '.join(known)}")
    return owners[0]


def group_overrides(overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    """Flat setting overrides grouped by section key (`seed` goes to every section)."""
    by_section: dict[str, dict[str, object]] = {key: {} for key in SECTIONS}
    for field, value in overrides.items():
        if field == "seed":
            for values in by_section.values():
                values["seed"] = value
        else:
            by_section[section_of(field)][field] = value
    return by_section


def settings_file_overrides(path: str | Path | None = None) -> dict[str, object]:
    """Flat overrides from a YAML file (`FI_SETTINGS`): either `setting: value` lines or the same grouped under
    section names. Changing the file and reloading the definitions makes exactly the affected assets stale."""
    path = path or os.environ.get("FI_SETTINGS", "")
    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text(encoding="utf8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ValueError(
                    f"{path}: unknown settings section {key!r}; sections are {', '.join(SECTIONS)}"
                )
            flat.update(value)
        else:
            flat[key] = value
    for field in flat:
        if field != "seed":
            section_of(field)  # unknown names fail here, naming the file's problem
    return flat
