"""The single Dagster entry point: `dagster dev` (via workspace.yaml) and `make demo` both load `defs`."""

import os

import dagster as dg

from fi_assets import corpus, documents, generation, judging, retrieval, templates
from fi_assets.automation import jobs, new_shard_sensor, stale_shard_schedule
from fi_assets.checks import checks
from fi_resources.io_manager import WarehouseIOManager
from fi_resources.resources import (
    TINY_SETTINGS,
    ModelsResource,
    PipelineSettings,
    WarehouseResource,
    profile_from_env,
)

# Never let a model or tokenizer call reach a hub: a wrong path must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

all_assets = dg.load_assets_from_modules([templates, documents, retrieval, generation, judging, corpus])


def build_resources(profile: str | None = None, home: str = "", **settings: object) -> dict[str, object]:
    profile = profile or profile_from_env()
    base = dict(TINY_SETTINGS) if profile == "tiny" else {}
    base.update(settings)
    warehouse = WarehouseResource(home=home)
    return {
        "warehouse": warehouse,
        "models": ModelsResource(profile=profile, home=home),
        "settings": PipelineSettings(**base),
        "io_manager": WarehouseIOManager(warehouse=warehouse),
    }


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=checks,
    jobs=jobs,
    sensors=[new_shard_sensor],
    schedules=[stale_shard_schedule],
    resources=build_resources(),
)
