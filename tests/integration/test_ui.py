"""The web UI really serves the graph: a dagster-webserver started by the test, queried over HTTP."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_definitions import ISSUE_ASSETS

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FI_HOME": str(tmp_path / "fi")}
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(exe), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"webserver did not start: {proc.stderr.read().decode()[-2000:]}"
                    ) from None
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def _graphql(base: str, query: str, timeout: float = 60) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(req, timeout=timeout).read())["data"]


def test_webserver_serves_every_asset_with_its_lineage(webserver):
    data = _graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) >= ISSUE_ASSETS
    deps = {"/".join(d["path"]) for d in nodes["judged_pairs"]["dependencyKeys"]}
    assert "instantiated_pairs" in deps
    # The root page is the real UI bundle.
    html = urllib.request.urlopen(webserver, timeout=30).read().decode()
    assert "<title>Dagster</title>" in html or "dagster" in html.lower()
