import dagster as dg

from fi_assets.definitions import all_assets, build_definitions, build_resources, defs
from fi_resources.settings import SECTIONS

ISSUE_ASSETS = {
    "user_queries", "silver_templates", "genericizer", "query_templates", "documents", "document_descriptions",
    "embedder_pairs", "retrieval_embedder", "chunk_labels", "local_embedder", "template_index", "retrieval_eval", "document_matches", "silver_instantiations",
    "round1_instantiator", "round2_instantiations", "instantiator", "instantiated_pairs", "judged_pairs", "training_corpus", "pretrained_checkpoint",
    "baseline_checkpoint", "pretraining_eval",
}  # fmt: skip


def test_definitions_load_with_every_stage_as_an_asset():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys >= ISSUE_ASSETS
    assert {"documents", "document_matches", "instantiated_pairs", "judged_pairs"} <= {
        a.key.to_user_string() for a in repo.asset_graph.assets_defs if a.partitions_def is not None
    }
    assert repo.get_sensor_def("new_shard_sensor")
    assert repo.get_schedule_def("stale_shard_schedule")
    assert repo.get_job("shard_job").partitions_def is not None


def test_every_asset_uses_the_warehouse_io_manager_and_resources():
    repo = defs.get_repository_def()
    for a in repo.asset_graph.assets_defs:
        for key in a.keys if a.is_executable else []:
            assert a.get_io_manager_key_for_asset_key(key) == "io_manager"
    assert {"warehouse", "models", "io_manager", *SECTIONS} <= set(defs.resources)


def test_lineage_flows_left_to_right():
    graph = defs.get_repository_def().asset_graph
    up = graph.get(dg.AssetKey("judged_pairs")).parent_keys
    assert dg.AssetKey("instantiated_pairs") in up
    assert dg.AssetKey("judged_pairs") in graph.get(dg.AssetKey("training_corpus")).parent_keys


def test_loading_the_definitions_keeps_torch_threads():
    """Importing the FAISS wrapper must not shrink torch's shared OpenMP pool (it once halved training speed)."""
    import subprocess
    import sys

    code = "import torch; n = torch.get_num_threads(); import fi_assets.definitions; print(n, torch.get_num_threads())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == out[1]


def _code_versions(**settings) -> dict[str, str]:
    return _versions_of(build_definitions(build_resources("tiny", **settings)))


def _versions_of(definitions: dg.Definitions) -> dict[str, str]:
    # The assets as built (not via get_repository_def, which reads Dagster's process-wide defs-state storage,
    # left closed by instances of other test modules).
    return {
        k.to_user_string(): v
        for a in definitions.assets or []
        for k, v in a.code_versions_by_key.items()  # type: ignore[union-attr]
        if v
    }


def _readers(section: str) -> set[str]:
    return {k.to_user_string() for a in all_assets if section in a.required_resource_keys for k in a.keys}


def test_a_setting_changes_the_code_version_of_exactly_its_readers():
    base = _code_versions()
    assert all("+" in v for v in base.values())  # own version + settings hash
    for setting, value, section in (
        ("keep_score", 5, "judge_settings"),
        ("passage_chars", 999, "document_settings"),
        ("pretrain_epochs", 3, "pretrain_settings"),
    ):
        changed = _code_versions(**{setting: value})
        assert {k for k in base if base[k] != changed[k]} == _readers(section), setting
    # Where the inputs live is not part of any output.
    assert _code_versions(document_folder="/elsewhere") == base
    # The model choices are: another encoder changes every asset that reads `models`.
    resources = build_resources("tiny")
    resources["models"] = resources["models"].model_copy(update={"encoder_name": "/some/other/encoder"})
    other = _versions_of(build_definitions(resources))
    assert {k for k in base if base[k] != other[k]} == _readers("models")
