"""The Dagster UI in a real browser.

``dagster dev`` serves the pipeline's definitions over a small generated shop in a
temporary folder; headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium) checks that the lineage graph shows every asset group, then materialises
``raw/items`` from its asset page and follows the run to success.

Run with ``make test-ui`` (it installs Chromium when missing) or ``pytest -m ui``; the
default ``make test`` skips these tests. Screenshots land in each test's ``tmp_path``;
with ``RECS_UI_SCREENSHOT_DIR`` set, the lineage graph is also copied there as
``asset-graph.png`` (the README's picture).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from recs_pipeline.settings import PROJECT_ROOT, Settings

from ..conftest import settings_for

pytestmark = pytest.mark.ui

CHROMIUM = Path(os.environ.get("RECS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RECS_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
VIEWPORT = (1600, 1000)
SERVER_START_TIMEOUT = 180  # s: the code location parses the dbt project on load
PAGE_TIMEOUT = 60  # s: for the UI to render what a test waits for
RUN_TIMEOUT = 180  # s: for the launched run to finish
ASSET = ("raw", "items")  # cheap: copies the landing zone's catalogue into raw.items

# The lineage graph's canvas, the group boxes drawn on it and the group list beside it.
JS_GRAPH_GROUPS = """
const svg = document.querySelector("svg[class*='svgContainer']");
if (!svg) return null;
return Array.from(svg.querySelectorAll('[data-tooltip]')).map(e => e.textContent.trim());
"""
JS_SIDEBAR_GROUPS = """
return Array.from(document.querySelectorAll('button'))
  .filter(b => b.querySelector("[aria-label='asset_group']"))
  .map(b => { const t = b.querySelector('[title]'); return t ? t.getAttribute('title') : b.textContent.trim(); });
"""
# Double-clicking the graph's background zooms it to fit (as a person would after
# hiding the sidebar). The event is sent to the canvas's frame, not to a node.
JS_ZOOM_TO_FIT = """
const svg = document.querySelector("svg[class*='svgContainer']");
let el = svg.parentElement;
while (el && el.getBoundingClientRect().height > window.innerHeight) el = el.parentElement;
const r = el.getBoundingClientRect();
el.dispatchEvent(new MouseEvent('dblclick', {bubbles: true, clientX: r.left + 10, clientY: r.top + 10}));
"""
JS_GRAPH_BOX = """
const svg = document.querySelector("svg[class*='svgContainer']");
if (!svg) return null;
const r = svg.getBoundingClientRect();
return [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)];
"""


# ---------------------------------------------------------------------------- the server


@dataclass
class DagsterDev:
    url: str
    proc: subprocess.Popen
    log_path: Path
    settings: Settings

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors from {self.url}: {payload['errors']}")
        return payload["data"]


WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""
RUN_QUERY = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status jobName assetSelection { path } }
    ... on PythonError { message }
  }
}
"""
RUN_EVENTS_QUERY = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}
"""
RUNS_QUERY = "query { runsOrError { ... on Runs { results { runId status assetSelection { path } } } } }"
MATERIALIZATIONS_QUERY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId timestamp } }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_loaded(server: DagsterDev) -> None:
    """Wait until the webserver answers and the code location has loaded (or failed to)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(
                f"`dagster dev` exited with code {server.proc.returncode} before serving the UI.\n"
                f"Last lines of {server.log_path}:\n{server.log_tail()}"
            )
        try:
            workspace = server.graphql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(1)
            continue
        if workspace["__typename"] != "Workspace":
            last = f"workspace error: {workspace.get('message')}"
        else:
            entries = workspace["locationEntries"]
            errors = [
                f"{e['name']}: {e['locationOrLoadError'].get('message')}"
                for e in entries
                if e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "PythonError"
            ]
            if errors:
                pytest.fail("The code location failed to load in the UI:\n" + "\n".join(errors))
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            last = "code locations: " + ", ".join(f"{e['name']}={e['loadStatus']}" for e in entries)
        time.sleep(1)
    pytest.fail(
        f"The Dagster UI at {server.url} was not ready within {SERVER_START_TIMEOUT}s ({last}).\n"
        f"Last lines of {server.log_path}:\n{server.log_tail()}"
    )


def stop(proc: subprocess.Popen) -> None:
    """Stop `dagster dev` as Ctrl-C would, then whatever is left of its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # code servers and run workers it started
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def dagster_ui(small_shop, tmp_path_factory):
    """`dagster dev -m recs_pipeline.definitions` over a generated shop, on a free local port."""
    root, _ = small_shop
    tmp = tmp_path_factory.mktemp("ui_server")
    data_dir, home = tmp / "data", tmp / "dagster_home"
    data_dir.mkdir()
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    recs_env = {
        "RECS_DATA_DIR": str(data_dir),
        "RECS_LANDING_DIR": str(root / "landing"),
        "RECS_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "RECS_HOLDOUT_DAYS": "3",
    }
    # Nothing of the caller's pipeline settings leaks into the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECS_") and k != "DAGSTER_HOME"}
    env.update(recs_env)
    env.update(DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1", GX_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1")
    port = free_port()
    log_path = tmp / "dagster-dev.log"
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "recs_pipeline.definitions",
           "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    settings = settings_for(data_dir, **{k: v for k, v in recs_env.items() if k != "RECS_DATA_DIR"})
    server = DagsterDev(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path, settings=settings)
    try:
        wait_until_loaded(server)
        # The "Join the Dagster community" dialog would cover the page on the first visit.
        server.graphql("mutation { setNuxSeen }")
        yield server
    finally:
        stop(proc)


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make test-ui`, which installs Debian's "
            "chromium and chromium-driver (or set RECS_CHROMIUM / RECS_CHROMEDRIVER)."
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / 'profile'}")
    options.add_argument(f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}")
    # An explicit driver path: Selenium Manager never looks for (or downloads) one.
    service = Service(str(CHROMEDRIVER), log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        # The page itself is exactly VIEWPORT (the headless window's frame would take some).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def fail_with_page(driver, server: DagsterDev, out: Path, name: str, message: str):
    """Fail with the message, a screenshot and the page's HTML, and the server's last lines."""
    shot, html = out / f"{name}-failure.png", out / f"{name}-failure.html"
    try:
        driver.save_screenshot(str(shot))
        html.write_text(driver.page_source)
    except Exception as e:  # noqa: BLE001 - the browser itself may be what failed
        shot = f"(no screenshot: {e})"
    pytest.fail(
        f"{message}\nPage: {driver.current_url}\nScreenshot: {shot}\n"
        f"Last lines of {server.log_path}:\n{server.log_tail(20)}"
    )


def wait_for(driver, condition, timeout: float = PAGE_TIMEOUT):
    """The condition's first truthy value, or None after the timeout."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(d):
        try:
            return condition(d)
        except WebDriverException:
            return None

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(attempt)
    except TimeoutException:
        return None


def wait_until_still(driver, timeout: float = 10) -> None:
    """Wait for the graph's zoom animation to settle (same box three polls in a row)."""
    boxes: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        boxes.append(driver.execute_script(JS_GRAPH_BOX))
        if len(boxes) >= 3 and boxes[-1] == boxes[-2] == boxes[-3]:
            return
        time.sleep(0.3)


def expected_groups(settings: Settings) -> set[str]:
    from recs_pipeline.definitions import build_defs

    graph = build_defs(settings).resolve_asset_graph()
    return {graph.get(key).group_name for key in graph.get_all_asset_keys()}


# ----------------------------------------------------------------------------- the tests


def test_lineage_graph_shows_every_asset_group(dagster_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By

    groups = expected_groups(dagster_ui.settings)
    assert len(groups) >= 9, f"the definitions have only these groups: {sorted(groups)}"

    browser.get(f"{dagster_ui.url}/asset-groups")
    # The navigation collapsed to icons leaves the graph most of the page.
    browser.execute_script("window.localStorage.setItem('dagster-nav-collapsed', 'true')")
    browser.refresh()

    def all_groups_drawn(d):
        shown = set(d.execute_script(JS_GRAPH_GROUPS) or [])
        return shown if groups <= shown else None

    if wait_for(browser, all_groups_drawn) is None:
        shown = set(browser.execute_script(JS_GRAPH_GROUPS) or [])
        listed = set(browser.execute_script(JS_SIDEBAR_GROUPS) or [])
        fail_with_page(
            browser, dagster_ui, tmp_path, "asset-graph",
            f"Asset groups missing from the lineage graph: {sorted(groups - shown)} "
            f"(the graph shows {sorted(shown)}; the sidebar lists {sorted(listed)}).",
        )
    listed = set(browser.execute_script(JS_SIDEBAR_GROUPS) or [])
    assert groups <= listed, (
        f"Asset groups missing from the lineage sidebar: {sorted(groups - listed)} (it lists {sorted(listed)})"
    )

    # The picture: sidebar hidden, the graph zoomed to fit the page.
    hide = browser.find_elements(
        By.CSS_SELECTOR, "button:not([class*='MainNavigation']):has([aria-label='panel_show_right'])"
    )
    if hide:
        hide[0].click()
        time.sleep(0.5)
    browser.execute_script(JS_ZOOM_TO_FIT)
    wait_until_still(browser)
    shot = tmp_path / "asset-graph.png"
    browser.save_screenshot(str(shot))
    assert all_groups_drawn(browser), "the asset groups disappeared from the graph while it was being fitted"
    if os.environ.get("RECS_UI_SCREENSHOT_DIR"):
        target = Path(os.environ["RECS_UI_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "asset-graph.png")


def test_materialise_an_asset_from_its_page(dagster_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from recs_pipeline.warehouse import connection

    path = list(ASSET)
    name = "/".join(ASSET)
    browser.get(f"{dagster_ui.url}/assets/{name}")

    def materialize_button(d):
        for b in d.find_elements(By.XPATH, "//button[normalize-space()='Materialize']"):
            if b.is_displayed() and b.is_enabled():
                return b
        return None

    button = wait_for(browser, materialize_button)
    if button is None:
        fail_with_page(browser, dagster_ui, tmp_path, "asset-page",
                       f"No enabled 'Materialize' button on the page of {name}.")
    runs_before = {r["runId"] for r in dagster_ui.graphql(RUNS_QUERY)["runsOrError"]["results"]}
    button.click()

    # The UI confirms with a toast "Launched run <id>  View" linking to the run.
    def launched_run_link(d):
        for a in d.find_elements(By.XPATH, "//a[contains(@href, '/runs/')]"):
            run_id = a.get_attribute("href").rstrip("/").rsplit("/runs/", 1)[-1].split("?")[0]
            if run_id and run_id not in runs_before:
                return run_id
        return None

    run_id = wait_for(browser, launched_run_link, timeout=30)
    if run_id is None:
        new = [r for r in dagster_ui.graphql(RUNS_QUERY)["runsOrError"]["results"] if r["runId"] not in runs_before]
        fail_with_page(browser, dagster_ui, tmp_path, "asset-page",
                       f"Clicking 'Materialize' on {name} showed no launched run (new runs in the instance: {new}).")

    # Follow the run through the instance until it ends.
    deadline = time.monotonic() + RUN_TIMEOUT
    run = {}
    while time.monotonic() < deadline:
        run = dagster_ui.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    if run.get("status") != "SUCCESS":
        events = dagster_ui.graphql(RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
        messages = "\n".join(e.get("message") or e["__typename"] for e in events[-15:])
        hint = " (QUEUED: is the dagster daemon running?)" if run.get("status") == "QUEUED" else ""
        pytest.fail(f"Run {run_id} of {name} ended {run.get('status', 'nowhere')}{hint} "
                    f"within {RUN_TIMEOUT}s:\n{messages}\nServer log:\n{dagster_ui.log_tail(20)}")
    assert run["assetSelection"] == [{"path": path}], run

    # The run's page says so too.
    browser.get(f"{dagster_ui.url}/runs/{run_id}")
    succeeded = wait_for(
        browser,
        lambda d: "Success" in d.find_element(By.TAG_NAME, "body").text
        and "RUN_SUCCESS" in d.find_element(By.TAG_NAME, "body").text,
    )
    browser.save_screenshot(str(tmp_path / "run.png"))
    if not succeeded:
        fail_with_page(browser, dagster_ui, tmp_path, "run-page",
                       f"The page of run {run_id} does not show Success / RUN_SUCCESS.")

    # The instance records the materialisation, the warehouse has the rows, and the
    # asset's page shows the same row count.
    asset = dagster_ui.graphql(MATERIALIZATIONS_QUERY, {"path": path})["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    materializations = asset["assetMaterializations"]
    assert materializations and materializations[0]["runId"] == run_id, (
        f"{name} has no materialisation from run {run_id}: {materializations}"
    )
    with connection(dagster_ui.settings.warehouse_path, read_only=True) as con:
        rows = con.execute(f"SELECT count(*) FROM {'.'.join(ASSET)}").fetchone()[0]
    assert rows > 0, f"{'.'.join(ASSET)} is empty after the run"

    browser.get(f"{dagster_ui.url}/assets/{name}")

    def shows_row_count(d):
        text = d.find_element(By.TAG_NAME, "body").text
        return "Row count" in text and "Never materialized" not in text and text

    text = wait_for(browser, shows_row_count)
    browser.save_screenshot(str(tmp_path / "asset-page.png"))
    if not text:
        fail_with_page(browser, dagster_ui, tmp_path, "asset-page",
                       f"The page of {name} still shows no materialisation after run {run_id}.")
    after = text.split("Row count", 1)[1].split()
    assert after and after[0].replace(",", "") == str(rows), (
        f"The page of {name} shows row count {after[:1]}, the warehouse has {rows} rows"
    )
