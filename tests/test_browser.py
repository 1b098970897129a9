"""Lesson 09 in a real JupyterLab, in a real (headless) browser: run every cell, move the dashboard's controls,
and check that the numbers shown are exactly what `lifecycle.costs` computes for the new settings.

The test starts JupyterLab on a free loopback port with a random token, on a temporary copy of the lesson (so
the committed notebook is never rewritten), drives Debian's Chromium through Playwright (no browser download),
and always shuts JupyterLab and its kernel down, pass or fail. It leaves `artifacts/browser/lesson09.png`
(the dashboard after the controls moved) and, when it fails, `lesson09-failure.png` and the server log.

How the dashboard is found (see `lifecycle.widgets`): every control carries the CSS class `lc-control-NAME`;
every number is a `<span class="lc-value" data-key=KEY data-value=repr(float)>`, inputs keyed `input.NAME`.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from lifecycle import costs
from lifecycle.data import cache_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "09_lifecycle_costs.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
REAL_LEDGER = cache_dir() / "results.json"  # read at import, before the tests' private cache is set
RUN_ALL_TIMEOUT_S = 600
DASH = ".lc-dashboard:has(.lc-control-lifetime_days)"  # lesson 09's what-if (a lesson may show other dashboards)
# the scenario's own inputs; every other `input.*` of the dashboard is an optimization factor
BASE_INPUTS = {"queries_per_day", "tokens_per_query", "usd_per_million_tokens", "training_usd", "lifetime_days",
               "retrain_every_days"}

# JupyterLab settings for a quiet, deterministic session: every cell in the DOM (no virtual scrolling), the
# kernel started without asking, no autosave, no news or update checks (nothing leaves the machine).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


# --- JupyterLab -----------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def stop_process_tree(proc: subprocess.Popen) -> None:
    """Stop the server's process group, then any descendant that left it (kernels start their own session)."""
    below = descendants(proc.pid)
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)  # on SIGTERM the server shuts its kernels down itself
            except ProcessLookupError:
                pass
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
    for pid in below:  # whatever outlived the server
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def jupyterlab(root: Path, work: Path):
    """Run JupyterLab on 127.0.0.1 with a token, serving `root`; yield (base_url, token); always stop it."""
    settings = work / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"))
    token, port = secrets.token_hex(16), free_port()
    log = open(work / "jupyterlab.log", "w")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}; see {work / 'jupyterlab.log'}")
            try:
                get_json(f"{base}/api/status?token={token}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not answer within 120 s")
                time.sleep(0.5)
        yield base, token
    finally:
        stop_process_tree(proc)
        log.close()


def wait_for_kernel(base: str, token: str, timeout: float = 180) -> None:
    """Until the lesson's kernel is idle and the page is connected to it (commands sent earlier can be lost)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kernels = get_json(f"{base}/api/kernels?token={token}")
        except OSError:  # the server can answer 500 while a kernel is still starting
            kernels = []
        if kernels and all(k["execution_state"] == "idle" and k["connections"] >= 1 for k in kernels):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the kernel was not ready within {timeout} s")


# --- the page ---------------------------------------------------------------------------------------------------

def shown_text(page) -> dict[str, str]:
    """Every number of the dashboard as written in the page: {data-key: data-value} (Python reprs)."""
    return dict(page.eval_on_selector_all(f"{DASH} .lc-value", "els => els.map(e => [e.dataset.key, e.dataset.value])"))


def shown_values(page) -> dict[str, float]:
    return {k: float(v) for k, v in shown_text(page).items()}


def wait_for_change(page, old: dict[str, str], timeout_ms: int = 60_000) -> None:
    """Until any of the numbers `old` ({data-key: data-value}) reads differently in the page."""
    page.wait_for_function(
        """([dash, old]) => Object.entries(old).some(([k, v]) => {
               const e = document.querySelector(`${dash} .lc-value[data-key="${k}"]`);
               return e && e.dataset.value !== v; })""",
        arg=[DASH, old], timeout=timeout_ms)


def press_on_slider(page, name: str, key: str, times: int) -> None:
    """Focus the slider handle of control `name` and press an arrow key `times` times, waiting for each update."""
    # ipywidgets 8 draws sliders with noUiSlider, 7.x with jQuery UI
    handle = page.locator(f"{DASH} .lc-control-{name} :is(.noUi-handle, .ui-slider-handle)").first
    for _ in range(times):
        before = shown_text(page)[f"input.{name}"]
        handle.focus()
        page.keyboard.press(key)
        wait_for_change(page, {f"input.{name}": before})


def menu(page, top: str, item: str) -> None:
    page.get_by_role("menuitem", name=top, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def run_all_cells(page) -> list[str]:
    """Clear the committed outputs, Run > Run All Cells, wait until the kernel is done; return the prompts.

    Run All stops at the first error and leaves the later cells unrun ("[ ]:"), so "done" is: nothing queued or
    running ("[*]"), the kernel idle, and at least one cell run.
    """
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
                           ".every(e => !/\\d/.test(e.textContent))", timeout=30_000)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                                  .map(e => e.textContent.trim());
                   const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
                   return idle && p.some(t => /\\d/.test(t)) && !p.some(t => t.includes('*')); }""",
        timeout=RUN_ALL_TIMEOUT_S * 1000, polling=500)
    return page.eval_on_selector_all(".jp-Notebook .jp-CodeCell .jp-InputPrompt",
                                     "els => els.map(e => e.textContent.trim())")


def save(page, path: Path) -> None:
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise TimeoutError("the notebook was not saved within 30 s")
        time.sleep(0.2)
    time.sleep(0.5)  # let the write finish


def error_outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def assert_matches_costs(values: dict[str, float]) -> None:
    """The shown outputs are exactly `costs.lifecycle_summary` of the shown inputs."""
    inputs = {k.removeprefix("input."): v for k, v in values.items() if k.startswith("input.")}
    expected = costs.lifecycle_summary(**inputs)
    outputs = {k: v for k, v in values.items() if not k.startswith("input.")}
    assert outputs, "the dashboard shows no output values"
    for key, shown in outputs.items():
        want = expected[key]
        assert shown == want or (math.isnan(shown) and math.isnan(want)), f"{key}: shown {shown!r}, costs says {want!r}"


# --- the test ---------------------------------------------------------------------------------------------------

def browser_prerequisites() -> str | None:
    """None when the browser test can run here; else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no browser download needed)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if shutil.which("jupyter") is None and not (Path(sys.executable).parent / "jupyter").exists():
        return "JupyterLab is not installed"
    if not LESSON.exists():
        return f"{LESSON.relative_to(ROOT)} does not exist yet"
    return None


def test_lesson09_dashboard_in_a_real_browser(tmp_path):
    if reason := browser_prerequisites():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    lesson = course / "notebooks" / LESSON.name
    shutil.copy2(LESSON, lesson)
    if REAL_LEDGER.exists():  # the measurements of the other lessons, as a learner would have them
        shutil.copy2(REAL_LEDGER, cache_dir() / "results.json")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("lesson09*"):
        old.unlink()

    with jupyterlab(course, tmp_path) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/notebooks/{lesson.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_for_kernel(base, token)
            prompts = run_all_cells(page)
            if not all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
                save(page, lesson)
                pytest.fail(f"Run All stopped early (prompts {prompts}); errors: {error_outputs(lesson)}")
            page.wait_for_selector(f"{DASH} .lc-value", state="attached", timeout=60_000)
            assert page.locator("text=Error displaying widget").count() == 0, "a widget failed to render"
            assert page.locator(f"{DASH} .lc-error").count() == 0, "the dashboard shows an error"

            before = shown_values(page)
            assert_matches_costs(before)
            # two sliders by keyboard: lifetime (integer days, step 1) and queries per day (log slider, 0.05 decade)
            press_on_slider(page, "lifetime_days", "ArrowRight", 3)
            press_on_slider(page, "queries_per_day", "ArrowLeft", 2)
            # and one optimization toggle whose factor is not neutral, so switching it on must change the bill
            mid = shown_text(page)
            toggles = page.eval_on_selector_all(
                f"{DASH} [class*='lc-control-use_']",
                "els => els.map(e => [[...e.classList].find(c => c.startsWith('lc-control-')), e.textContent])")
            live = [cls for cls, text in toggles if "1.00×" not in text and "0% hits" not in text]
            if live:
                page.locator(f"{DASH} .{live[0]} input[type=checkbox]").check()
                factors = {k: v for k, v in mid.items() if k.startswith("input.") and k[6:] not in BASE_INPUTS}
                wait_for_change(page, factors)

            wait_for_kernel(base, token)  # the figure is redrawn after the table
            page.wait_for_timeout(1_000)
            after = shown_values(page)
            assert after["input.lifetime_days"] == before["input.lifetime_days"] + 3
            want_q = 10 ** (math.log10(before["input.queries_per_day"]) - 2 * 0.05)
            got_q = after["input.queries_per_day"]
            assert math.isclose(got_q, want_q, rel_tol=1e-9), (got_q, want_q)
            changed = {k for k in after if after[k] != before.get(k)}
            assert {"daily_inference_usd", "lifetime_usd", "inference_usd_total"} <= changed, changed
            assert_matches_costs(after)

            page.locator(DASH).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lesson09.png"))

            save(page, lesson)
            assert error_outputs(lesson) == [], "cells ended in an error"
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "lesson09-failure.png"))
            raise
        finally:
            browser.close()
            log = tmp_path / "jupyterlab.log"
            if log.exists():
                shutil.copy2(log, ARTIFACTS / "lesson09-jupyterlab.log")
