"""The web UI in a real browser: headless Debian chromium drives `dagster dev` started by the test.

Every asset appears in the global lineage graph, a materialization of `documents` (the one asset that needs no
model: it only splits a shard file into passages) is launched by clicking through the UI as a person would,
the run succeeds, and a screenshot of the graph is written (FI_UI_SCREENSHOT=path also copies it there; that is
how docs/lineage.png is made). Skipped only where chromium, chromedriver or selenium is missing; `make test`
installs chromium with apt where it can.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_definitions import ISSUE_ASSETS
from tests.integration.test_ui import _free_port, _graphql

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("FI_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FI_CHROMEDRIVER", "/usr/bin/chromedriver"))
SHARD = "ui-shard"
STARTUP_S = 90  # dagster dev: webserver, daemon and code server loading the definitions (~20 s here)
RUN_S = 90  # the documents run of a 3-document shard takes a few seconds; the daemon dequeues it first
UI_S = 30  # any one element of the UI to appear


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return (
                f"{path} not found: install Debian's {package} (apt-get install -y chromium chromium-driver)"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


MISSING_BROWSER = _missing_browser()


def _stop(proc: subprocess.Popen) -> None:
    """End `dagster dev` and its children (webserver, daemon, code server, run workers): its own group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: dagster dev ignores SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Children that outlived their parent (SIGTERM reached dagster dev before them) still hold the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def dagster_dev(tmp_path) -> Iterator[str]:
    """`dagster dev` on 127.0.0.1 with its own DAGSTER_HOME and FI_HOME, one shard in the inbox, known as a
    partition (as the sensor would add it; the sensor's default ticks are too slow for a bounded test)."""
    import dagster as dg

    home, fi = tmp_path / "dagster_home", tmp_path / "fi"
    (home / ".nux").mkdir(parents=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")  # no newsletter pop-up over the graph
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    inbox = fi / "inbox" / "documents"
    inbox.mkdir(parents=True)
    with open(inbox / f"{SHARD}.jsonl", "w", encoding="utf8") as f:
        for i, topic in enumerate(["tides", "volcanoes", "bread"]):
            text = " ".join(f"Sentence {j} of a short article about {topic}." for j in range(40))
            f.write(json.dumps({"title": f"About {topic}", "text": text, "source": f"test {i}"}) + "\n")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        instance.add_dynamic_partitions("document_shards", [SHARD])
    finally:
        instance.dispose()

    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FI_HOME": str(fi), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "dagster_dev.log", "wb")  # noqa: SIM115 (closed after the process ends)
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen(
        [str(exe), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (tmp_path / "dagster_dev.log").read_bytes().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"dagster dev did not start in {STARTUP_S} s:\n{tail}") from None
                time.sleep(1)
        yield base
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start. The window is tall enough for
    # the expanded graph to fit at the UI's smallest zoom (at 1080 px its top row was cut off).
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=2000,1700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def label_matches(label: str, name: str) -> bool:
    """A graph node shows a long name cut in the middle ("baseli…_checkpoint")."""
    if "…" not in label:
        return label == name
    head, tail = label.split("…", 1)
    return len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def test_label_matches_cut_names():
    assert label_matches("documents", "documents")
    assert label_matches("baseli…_checkpoint", "baseline_checkpoint")
    assert not label_matches("baseli…_checkpoint", "pretrained_checkpoint")
    assert not label_matches("documents", "document_matches")


def _open_lineage(driver, base: str) -> list[str]:
    """The global lineage graph with every group expanded; returns the node labels shown."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, UI_S)
    driver.get(f"{base}/asset-groups")
    wait.until(
        ec.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Materialize all…']")),
        "the lineage page shows no 'Materialize all…'",
    )
    # Groups start collapsed in a fresh browser and stay as last left within one; the graph's "Expand all
    # groups" (its options menu) has the shortcut Alt+E, a toggle, so press it only on a collapsed graph.
    nodes = "[class*='AssetNode_assetName']"
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg foreignObject")), "no graph drawn")
    if len(driver.find_elements(By.CSS_SELECTOR, nodes)) < len(ISSUE_ASSETS):
        ActionChains(driver).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    wait.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, nodes)) >= len(ISSUE_ASSETS),
        f"fewer than {len(ISSUE_ASSETS)} asset nodes after expanding the groups",
    )
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, nodes)]


@pytest.mark.skipif(MISSING_BROWSER is not None, reason=str(MISSING_BROWSER))
def test_browser_shows_the_graph_and_materializes_documents(dagster_dev, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, driver = dagster_dev, browser
    wait = WebDriverWait(driver, UI_S)
    every = {
        "/".join(n["assetKey"]["path"])
        for n in _graphql(base, "{ assetNodes { assetKey { path } } }", timeout=30)["assetNodes"]
    }
    assert every >= ISSUE_ASSETS

    labels = _open_lineage(driver, base)
    unshown = {name for name in every if not any(label_matches(label, name) for label in labels)}
    assert not unshown, f"not in the lineage graph: {sorted(unshown)} (labels: {labels})"

    # Materialize `documents` as a person would: its page, "Materialize…", all (one) partitions, launch.
    driver.get(f"{base}/assets/documents")
    for label in ("Materialize…", "All", "Launch 1 run"):
        button = f"//button[normalize-space(.)='{label}']"
        wait.until(ec.element_to_be_clickable((By.XPATH, button)), f"no clickable {label!r} button").click()
    wait.until(
        ec.invisibility_of_element_located((By.XPATH, "//*[@role='dialog']")), "the launch dialog stayed open"
    )

    runs_query = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
    deadline, runs = time.monotonic() + RUN_S, []
    while time.monotonic() < deadline:
        # The UI's own runs: the hourly schedule also launches one for the shard when the test spans the hour.
        runs = [
            r
            for r in _graphql(base, runs_query, timeout=30)["runsOrError"]["results"]
            if {"key": "dagster/from_ui", "value": "true"} in r["tags"]
        ]
        if runs and runs[0]["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(2)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["status"] == "SUCCESS", f"run {run['runId']} ended {run['status']} (or not within {RUN_S} s)"
    assert {"key": "dagster/partition", "value": SHARD} in run["tags"]

    # The run's page in the UI says so too.
    driver.get(f"{base}/runs/{run['runId']}")
    wait.until(
        ec.presence_of_element_located((By.XPATH, "//*[normalize-space(.)='Success']")),
        "the run's page does not say Success",
    )

    # The screenshot: the whole graph, groups expanded, `documents` now materialized.
    _open_lineage(driver, base)
    time.sleep(1)  # the graph animates its zoom-to-fit
    shot = tmp_path / "lineage.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("FI_UI_SCREENSHOT"):
        shutil.copy(shot, os.environ["FI_UI_SCREENSHOT"])
