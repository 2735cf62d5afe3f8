"""Issue 11: the partitioned stages' models on a real Ray cluster (`ray start --head` on 127.0.0.1, started
here), joined through dagster-ray: one shard's descriptions, matches, pairs and judgements are the same as
the in-process run's, and a rerun is answered from the response cache with no duplicate rows.

The tiny profile (random weights) with a released-layout bank, so that every stage has rows to compare."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fi_assets import demo
from fi_assets.automation import STAGES
from fi_assets.definitions import build_definitions, build_resources
from fi_resources.resources import ModelsResource
from tests.integration.test_llm_graph import BANK
from tests.integration.test_llm_graph import SETTINGS as LLM_GRAPH_SETTINGS

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
SHARD_ASSETS = ["document_descriptions", "document_matches", "instantiated_pairs", "judged_pairs"]
UPSTREAM = [stage for stage in STAGES if stage[0] != "generate_shards"][:5]  # up to the instantiator
SETTINGS = {**LLM_GRAPH_SETTINGS, "docs_per_shard": 6}  # small, with filters a random encoder passes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_processes(temp: Path) -> list:
    """The daemons that name the cluster's temp folder and their children (workers renamed "ray::...")."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess):
            if str(temp) in " ".join(proc.info["cmdline"] or []):
                found += [proc, *proc.children(recursive=True)]
    return found


@pytest.fixture(scope="module")
def ray_address():
    """A real one-node cluster on 127.0.0.1 with 2 CPUs; its processes are stopped by their own temp
    folder, so no other Ray on the machine is touched."""
    temp = Path(tempfile.mkdtemp(prefix="fi-ray-"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--include-dashboard=false", "--object-store-memory=100000000", "--disable-usage-stats",
           f"--temp-dir={temp}"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, timeout=180, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()  # a driver still connected to a stopped cluster ends its own process
        # The cluster's daemons name the temp folder; its workers (renamed "ray::...") are their children.
        for proc in cluster_processes(temp):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def resources_for(home: Path, bank: Path, engine: str) -> dict:
    resources = build_resources("tiny", home=str(home), released_bank_path=str(bank), **SETTINGS)
    resources["models"] = ModelsResource(profile="tiny", warehouse=resources["warehouse"], engine=engine)
    return resources


def drop_cache(home: Path) -> None:
    for f in (home / "cache").glob("responses.sqlite*"):
        f.unlink()


def materialize_shard(resources: dict, instance: dg.DagsterInstance, shard: str) -> dict[str, dict]:
    """The shard's four model stages; returns each asset's materialization metadata."""
    result = dg.materialize(
        list(build_definitions(resources).assets or []),
        selection=SHARD_ASSETS,
        partition_key=shard,
        instance=instance,
        resources=resources,
    )
    assert result.success
    return {
        m.asset_key.to_user_string(): {k: getattr(v, "value", v) for k, v in m.metadata.items()}
        for asset in SHARD_ASSETS
        for m in result.asset_materializations_for_node(asset)
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_cache, ray_address):
    work = tmp_path_factory.mktemp("ray-engine")
    bank = work / "finetemplates.jsonl"
    bank.write_text("".join(json.dumps(row) + "\n" for row in BANK))
    local_home, ray_home = work / "local", work / "ray"
    local = resources_for(local_home, bank, "local")
    # A test instance of its own, entered: Dagster's definitions loader reads the entered instance's
    # state storage, and one left entered by an earlier test may point at a deleted folder.
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "STAGES", UPSTREAM)
        demo.run_pipeline(local, instance)  # the bank, embedder, index and instantiator: shared inputs
        mp.undo()
        shutil.copytree(local_home, ray_home)
        for home in (local_home, ray_home):
            drop_cache(home)  # each run below asks its own models
        shard = sorted(instance.get_dynamic_partitions("document_shards"))[0]
        mp.setenv("RAY_ADDRESS", ray_address)
        on_ray = resources_for(ray_home, bank, "ray")
        ray_meta = materialize_shard(on_ray, instance, shard)
        rerun_meta = materialize_shard(on_ray, instance, shard)
        mp.undo()
        local_meta = materialize_shard(local, instance, shard)
    return local, on_ray, local_meta, ray_meta, rerun_meta


def test_a_shard_on_ray_equals_the_in_process_run(runs) -> None:
    local, on_ray, local_meta, ray_meta, _ = runs
    for asset in SHARD_ASSETS:
        expected = local["warehouse"].get().read_table(asset)
        got = on_ray["warehouse"].get().read_table(asset)
        # Something to compare; random weights write no valid pair, so the judge is compared below.
        assert len(expected) or asset == "judged_pairs", asset
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-5, obj=asset)
        print(asset, len(got), local_meta[asset].get("model_calls"), ray_meta[asset].get("model_calls"))
    pairs = on_ray["warehouse"].get().read_table("instantiated_pairs")
    assert ray_meta["instantiated_pairs"]["model_calls"] == len(pairs) > 0


def test_a_rerun_on_ray_is_answered_from_the_cache_without_duplicates(runs) -> None:
    _, on_ray, _, ray_meta, rerun_meta = runs
    for asset in ("document_descriptions", "instantiated_pairs"):
        assert rerun_meta[asset]["model_calls"] == 0, asset
        assert rerun_meta[asset]["cache_hits"] == ray_meta[asset]["model_calls"], asset
    wh = on_ray["warehouse"].get()
    pairs = wh.read_table("instantiated_pairs")
    assert not pairs["pair_id"].duplicated().any()
    rows = wh.query("SELECT asset_key, count(*) AS n FROM catalog.materializations GROUP BY 1")
    print(rows)


def test_the_judge_on_ray_scores_as_in_process(runs, ray_address, monkeypatch) -> None:
    local, on_ray, *_ = runs
    pairs = on_ray["warehouse"].get().read_table("instantiated_pairs")
    pairs = pd.concat([pairs] * -(-70 // len(pairs))).head(70)  # two chunks: 64 and 6
    args = (pairs["instruction"].fillna("").tolist(), pairs["answer"].fillna("").tolist())
    expected = local["models"].parts().judge().score(*args)
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    done: list[int] = []
    got = on_ray["models"].parts().judge().score(*args, progress=lambda d, n, s: done.append(d))
    assert len(got) == len(expected) == len(pairs)
    # Chunks of 64 and 6 pad differently from one call of 70: floats agree to rounding, the rest exactly.
    close = {"rel": 1e-4, "abs": 1e-4, "nan_ok": True}
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        wrong = {
            k: (g[k], v)
            for k, v in e.items()
            if g[k] != (pytest.approx(v, **close) if isinstance(v, float) else v)
        }
        assert not wrong, wrong
    assert done[-1] == len(pairs)


def test_the_typer_on_ray_types_as_in_process(runs, ray_address, monkeypatch) -> None:
    # The tiny profile turns the typer off in matching, so its pool is first used here, not yet started.
    local, on_ray, *_ = runs
    titles = on_ray["warehouse"].get().read_table("documents")["title"].tolist()
    titles += [f"Harbour number {i}" for i in range(70)]  # more than one chunk of 64
    nouns = ["country", "person", "river"]
    expected = local["models"].parts().typer().scores(titles, nouns)
    monkeypatch.setenv("RAY_ADDRESS", ray_address)
    got = on_ray["models"].parts().typer().scores(titles, nouns)
    assert got.keys() == expected.keys() and len(got) == len(set(titles)) > 0
    for title, types in expected.items():
        assert got[title].keys() == types.keys()
        assert got[title] == pytest.approx(types, rel=1e-4, abs=1e-4), title
