"""Lesson 08's speculative-decoding sliders in a real JupyterLab and a real (headless) browser.

Reuses the JupyterLab and page helpers of `test_browser.py` (lesson 09's dashboard). Running lesson 08 itself
needs the trained teacher and student and minutes of timing, none of which the widget depends on, so the test runs
the lesson's own dashboard cell (read from the committed notebook) after one cell that sets the measured values it
reads (`best`, `c`, `rows`) to fixed numbers. It checks that JupyterLab renders the live widget from the output
(which also carries a PNG of the starting state for static viewers), moves the γ and c sliders by keyboard, reads
the shown numbers back and compares them with `speculative.speedup_summary`, then saves the notebook and checks
that the saved output holds both the widget view and the picture. Skips cleanly without playwright or Chromium.
"""
from __future__ import annotations

import shutil

import nbformat
import pytest

from lifecycle import speculative
from test_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, browser_prerequisites, error_outputs,
                          jupyterlab, press_on_slider, run_all_cells, save, wait_for_kernel)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LESSON08 = ROOT / "notebooks" / "08_speculative_decoding.ipynb"
DASH = ".lc-dashboard:has(.lc-control-gamma)"
SETUP = """# the values lesson 08 measures (fixed here: the widget depends on nothing else)
best = {"alpha": 0.62, "gamma": 3}
c = 0.21
rows = [{"gamma": 1, "measured_speedup": 1.12}, {"gamma": 3, "measured_speedup": 1.31}]"""


def dashboard_cell() -> str:
    nb = nbformat.read(LESSON08, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "speculative_dashboard(" in c.source]
    assert len(cells) == 1, "lesson 08 should show the speculative dashboard in one cell"
    return cells[0]


def shown(page) -> dict[str, float]:
    pairs = page.eval_on_selector_all(f"{DASH} .lc-value", "els => els.map(e => [e.dataset.key, e.dataset.value])")
    return {k: float(v) for k, v in pairs}


def test_lesson08_dashboard_in_a_real_browser(tmp_path):
    if reason := browser_prerequisites():
        pytest.skip(reason)
    if not LESSON08.exists():
        pytest.skip("lesson 08 does not exist yet")
    from playwright.sync_api import sync_playwright

    course = tmp_path / "course"
    course.mkdir()
    path = course / "lesson08_widget.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(dashboard_cell())])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with jupyterlab(course, tmp_path) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/{path.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_for_kernel(base, token)
            run_all_cells(page)
            page.wait_for_selector(f"{DASH} .lc-value", state="attached", timeout=60_000)
            assert page.locator("text=Error displaying widget").count() == 0, "the widget failed to render"
            # the output's PNG is for static viewers: a live front end shows the widget instead of it
            assert page.locator(".jp-OutputArea-output img:not(.lc-dashboard img)").count() == 0

            before = shown(page)
            assert before["input.gamma"] == 3 and before["input.alpha"] == 0.62 and before["input.c"] == 0.21
            press_on_slider_in(page, "gamma", "ArrowRight", 2)
            press_on_slider_in(page, "c", "ArrowLeft", 1)
            wait_for_kernel(base, token)
            page.wait_for_timeout(1_000)
            after = shown(page)
            assert after["input.gamma"] == 5
            assert after["input.c"] == pytest.approx(0.20, abs=1e-12)
            want = speculative.speedup_summary(after["input.alpha"], int(after["input.gamma"]), after["input.c"])
            for key, value in want.items():
                assert after[key] == value, f"{key}: shown {after[key]!r}, speculative says {value!r}"
            assert after["speedup"] != before["speedup"]

            page.locator(DASH).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lesson08-dashboard.png"))
            save(page, path)
            assert error_outputs(path) == []
            saved = [o for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
            assert len(saved) == 1 and "image/png" in saved[0]["data"], "the saved output lacks its static picture"
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "lesson08-dashboard-failure.png"))
            raise
        finally:
            browser.close()
            log = tmp_path / "jupyterlab.log"
            if log.exists():
                shutil.copy2(log, ARTIFACTS / "lesson08-jupyterlab.log")


def press_on_slider_in(page, name: str, key: str, times: int) -> None:
    """`test_browser.press_on_slider`, on this test's dashboard (that helper looks in lesson 09's)."""
    import test_browser
    saved = test_browser.DASH
    test_browser.DASH = DASH
    try:
        press_on_slider(page, name, key, times)
    finally:
        test_browser.DASH = saved
