"""The single Dagster entry point: `dagster dev` (via workspace.yaml) and `make demo` both build their
definitions with `build_definitions`, so code versions cover the same settings in the UI and the demo."""

import os

import dagster as dg

from fi_assets import corpus, documents, generation, judging, retrieval, templates
from fi_assets.automation import jobs, new_shard_sensor, stale_shard_schedule
from fi_assets.checks import checks
from fi_assets.runs import patch_blocked_wait
from fi_assets.versioning import with_settings_versions
from fi_resources.io_manager import WarehouseIOManager
from fi_resources.profiles import get_profile
from fi_resources.resources import ModelsResource, WarehouseResource, profile_from_env, settings_resources
from fi_resources.settings import settings_file_overrides

# Never let a model or tokenizer call reach a hub: a wrong path must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A step blocked on the lm pool sleeps instead of spinning a core (see fi_assets.runs).
patch_blocked_wait()

# As written in the modules, with their own code versions (`build_definitions` adds the settings hash).
all_assets = dg.load_assets_from_modules([templates, documents, retrieval, generation, judging, corpus])


def build_resources(profile: str | None = None, home: str = "", **settings: object) -> dict[str, object]:
    """The resources of a profile: warehouse, models, IO manager and every settings section. Settings come
    from the profile's defaults, then the FI_SETTINGS file, then `settings` (flat names)."""
    profile = profile or profile_from_env()
    overrides = {**get_profile(profile).settings, **settings_file_overrides(), **settings}
    warehouse = WarehouseResource(home=home)
    return {
        "warehouse": warehouse,
        "models": ModelsResource(profile=profile, warehouse=warehouse),
        "io_manager": WarehouseIOManager(warehouse=warehouse),
        **settings_resources(**overrides),
    }


def build_definitions(resources: dict[str, object]) -> dg.Definitions:
    return dg.Definitions(
        assets=with_settings_versions(all_assets, resources),
        asset_checks=checks,
        jobs=jobs,
        sensors=[new_shard_sensor],
        schedules=[stale_shard_schedule],
        resources=resources,
    )


defs = build_definitions(build_resources())
