"""The lessons in a real JupyterLab, in a real (headless) browser, read and driven as a learner would.

- `test_lesson09_dashboard_in_a_real_browser`: run every cell of lesson 09, move the dashboard's controls, and
  check that the numbers shown are exactly what `lifecycle.costs` computes for the new settings.
- `test_every_lesson_shows_money_as_written`: open every lesson as committed (saved outputs, nothing executed)
  and fail if a dollar amount is typeset as maths (a pair of "$" in one Markdown cell or output is a formula to
  MathJax), if an amount the source writes with `lifecycle.money.DOLLAR_MARKDOWN` is not shown as "$amount", if
  money appears in scientific notation, or if a computed output shows "nan" or "inf". Leaves
  `money-LESSON.png` for each lesson with a problem.
- `test_lesson07_and_lesson02_dashboards_in_a_real_browser`: lesson 07's cache what-if and lesson 02's fleet
  dashboard (their cells taken from the committed lessons, run in a small notebook of their own) driven by
  keyboard and typed values: the shown numbers are the library's, labels fit, the values the lesson cites
  (1,000 and 5,000 cache entries) can be set. Leaves `lesson07-cache-what-if.png` and `lesson02-fleet.png`.

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
DASH = ".lc-dashboard:has(.lc-control-retrain_every_days)"  # lesson 09's what-if (it shows other dashboards too)
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


# --- what the learner reads: every lesson as committed (saved outputs, no kernel work) ------------------------

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SAFE_DOLLAR = "<span>&#36;</span>"  # lifecycle.money.DOLLAR_MARKDOWN
# money as the sources write it safely, and the amount that must then appear after a "$" in the rendered text
# (a "$" written any way that is surely money, not maths: the safe form, a bare entity, an escaped "\\$")
MONEY_IN_SOURCE = re.compile(r"(?:" + re.escape(SAFE_DOLLAR) + r"|&#36;|&dollar;|\\\$)(-?\d[\d,]*(?:\.\d+)?)")
SCIENTIFIC_MONEY = re.compile(r"\$\s?-?\d[\d,]*(?:\.\d+)?[eE][+-]?\d")
NOT_A_NUMBER = re.compile(r"(?<![\w.])(?:nan|inf|-inf|NaN|Inf|infinity|Infinity)(?![\w(])")
SENTINEL = r"Sentinel for the test: $\sqrt{x_{\mathrm{sentinel}}}$"  # typeset last: MathJax has reached the end

# Per cell: `text`, everything rendered for the reader (Markdown, outputs; innerText, so typeset maths shows as
# what it became); `computed`, the text nodes of Markdown, HTML and widget outputs outside code blocks (what the
# lesson computed and wrote, where "nan" or "inf" means a broken number); `maths`, each formula's MathML.
READ_RENDERED = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map((cell, i) => {
    const parts = [...cell.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown, .jp-OutputArea-output')];
    const computed = [];
    for (const out of cell.querySelectorAll('.jp-OutputArea-output:is([data-mime-type="text/markdown"],'
                                            + '[data-mime-type="text/html"], .jupyter-widgets, :has(.jupyter-widgets))')) {
        const walk = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {
            const n = walk.currentNode;
            if (!n.parentElement.closest('pre, code, mjx-container, mjx-assistive-mml')) computed.push(n.nodeValue);
        }
    }
    const maths = [...cell.querySelectorAll('mjx-container')].map(m => {
        const mml = m.querySelector('mjx-assistive-mml math');
        return mml ? mml.outerHTML : m.textContent; });
    return {index: i, text: parts.map(p => p.innerText).join('\\n'), computed: computed.join(' '), maths: maths}; })"""


def markdown_sources(path: Path) -> list[str]:
    """Per cell, in order: the Markdown a learner reads (the cell's source, or its Markdown and HTML outputs)."""
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            out.append(cell.source)
        elif cell.cell_type == "code":
            out.append("\n".join(str(o.get("data", {}).get(kind, "")) for o in cell.get("outputs", [])
                                 for kind in ("text/markdown", "text/html")))
        else:
            out.append("")
    return out


def prose_as_maths(mathml: str) -> bool:
    """True when a typeset formula looks like money or prose: a comma-grouped number, or a word cut into letters."""
    if re.search(r"<mn>\d{1,3}(,\d{3})+(\.\d+)?</mn>", mathml):
        return True
    if re.match(r"<math[^>]*><mn>\d*[.,]\d+</mn>", mathml):  # a formula that opens with "0.01": "$0.01 is $"
        return True
    letters = re.findall(r"<mi>([A-Za-z])</mi>|<mi mathvariant=\"normal\">([A-Za-z])</mi>|(<[^>]+>)", mathml)
    run = best = 0
    for one, normal, other in letters:
        run = run + 1 if (one or normal) else (run if other.startswith("</") or other.startswith("<mrow") else 0)
        best = max(best, run)
    return best >= 4  # "𝑖𝑠" is common maths (i, s); four italic letters in a row is a typeset word


def money_problems(name: str, sources: list[str], cells: list[dict]) -> list[str]:
    """Everything wrong with how one lesson shows money (empty: nothing)."""
    problems = []
    if len(sources) + 1 != len(cells):  # + the sentinel cell
        return [f"{name}: {len(cells)} cells in the page, {len(sources) + 1} in the file"]
    for src, cell in zip(sources, cells):
        where = f"{name} cell {cell['index']}"
        text = cell["text"]
        for amount in MONEY_IN_SOURCE.findall(src):
            if f"${amount}" not in text:
                problems.append(f"{where}: ${amount} is written in the source but not shown (typeset as maths?)")
        for mathml in cell["maths"]:
            if prose_as_maths(mathml):
                problems.append(f"{where}: money or prose typeset as maths: {mathml[:160]}")
        if m := SCIENTIFIC_MONEY.search(text):
            problems.append(f"{where}: money in scientific notation: {m.group()!r}")
        computed = cell["computed"]  # prose may speak of NaN and infinity; a computed output must not show one
        if m := NOT_A_NUMBER.search(computed):
            problems.append(f"{where}: {m.group()!r} in an output: {computed[max(0, m.start() - 60):m.end() + 20]!r}")
    return problems


def open_in_lab(page, base: str, token: str, rel: str, workspace: str) -> None:
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{rel}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)


def wait_for_typesetting(page, timeout_ms: int = 120_000) -> None:
    """Until MathJax has typeset the sentinel (the last cell) and the number of formulas stopped changing."""
    page.wait_for_function("""() => { const c = [...document.querySelectorAll('.jp-Notebook .jp-Cell')].pop();
                                      return c && c.querySelector('mjx-container'); }""", timeout=timeout_ms)
    count = -1
    for _ in range(20):
        now = page.locator(".jp-Notebook mjx-container").count()
        if now == count:
            return
        count = now
        page.wait_for_timeout(500)


def shut_down_kernels(base: str, token: str) -> None:
    """Opening a notebook starts its kernel; nothing here needs it."""
    for s in get_json(f"{base}/api/sessions?token={token}"):
        req = urllib.request.Request(f"{base}/api/sessions/{s['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def test_every_lesson_shows_money_as_written(tmp_path):
    """Each lesson as committed, opened in JupyterLab: every dollar amount shown as a dollar amount, no maths
    typesetting of money or prose, no "nan"/"inf", no scientific notation after a "$"."""
    if reason := browser_prerequisites():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # LIFECYCLE_BROWSER_NOTEBOOKS: check other copies of the lessons (e.g. freshly executed ones) instead
    source_dir = Path(os.environ.get("LIFECYCLE_BROWSER_NOTEBOOKS", ROOT / "notebooks"))
    lessons = sorted(source_dir.glob("[0-9][0-9]_*.ipynb"))
    assert len(lessons) >= 10, f"expected the ten lessons in {source_dir}, found {[p.name for p in lessons]}"
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    for path in lessons:  # a copy with a last cell whose formula tells when typesetting is done
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell(SENTINEL))
        nbformat.write(nb, course / "notebooks" / path.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("money-*"):
        old.unlink()

    problems = []
    with jupyterlab(course, tmp_path) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            for i, path in enumerate(lessons):
                open_in_lab(page, base, token, f"notebooks/{path.name}", f"money{i}")
                wait_for_typesetting(page)
                cells = page.evaluate(READ_RENDERED)
                found = money_problems(path.stem, markdown_sources(path), cells)
                if found:
                    page.screenshot(path=str(ARTIFACTS / f"money-{path.stem}.png"), full_page=True)
                problems += found
                shut_down_kernels(base, token)
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


# --- lesson 07's cache what-if and lesson 02's fleet dashboard, live ------------------------------------------

def lesson_cell(path: Path, needle: str) -> str:
    """The source of the one code cell of a lesson that contains `needle`."""
    found = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and needle in c.source]
    assert len(found) == 1, f"{len(found)} cells of {path.name} contain {needle!r}"
    return found[0]


def type_into_readout(page, scope: str, name: str, value) -> None:
    """Type a value into a slider's readout, as a learner can, and confirm it with Enter."""
    readout = page.locator(f"{scope} .lc-control-{name} .widget-readout").first
    readout.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def values_in(page, scope: str) -> dict[str, str]:
    return dict(page.eval_on_selector_all(f"{scope} .lc-value", "els => els.map(e => [e.dataset.key, e.dataset.value])"))


def texts_in(page, scope: str) -> dict[str, str]:
    return dict(page.eval_on_selector_all(f"{scope} .lc-value", "els => els.map(e => [e.dataset.key, e.textContent])"))


def wait_for_values(page, scope: str, old: dict[str, str], timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        """([scope, old]) => Object.entries(old).some(([k, v]) => {
               const e = document.querySelector(`${scope} .lc-value[data-key="${k}"]`);
               return e && e.dataset.value !== v; })""", arg=[scope, old], timeout=timeout_ms)


def labels_cut_short(page, scope: str) -> list[str]:
    """Control labels whose text does not fit their box (drawn with an ellipsis)."""
    return page.eval_on_selector_all(f"{scope} .widget-label",
                                     "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")


CACHE = ".lc-cache-what-if"
FLEET = ".lc-dashboard:has(.lc-control-n_gpus)"


def test_lesson07_and_lesson02_dashboards_in_a_real_browser(tmp_path):
    """The lessons' own dashboard cells (taken from the committed notebooks) in a live kernel, driven by keyboard
    and typed values: the numbers shown are the library's, the labels fit, the values the lesson cites are reachable."""
    if reason := browser_prerequisites():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from lifecycle import money
    from lifecycle.measure import queries

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # lesson 02's cell first: lesson 07's rebinds the name `widgets` to ipywidgets
    nb.cells = [nbformat.v4.new_code_cell("from IPython.display import display\nfrom lifecycle import widgets\n"
                                          "from lifecycle.measure import queries\nfrom lifecycle.money import usd"),
                nbformat.v4.new_code_cell(lesson_cell(ROOT / "notebooks" / "02_training_at_scale.ipynb",
                                                      "widgets.fleet_dashboard(")),
                nbformat.v4.new_code_cell(lesson_cell(ROOT / "notebooks" / "07_caching.ipynb", "def what_if_view("))]
    course = tmp_path / "course"
    course.mkdir()
    nbformat.write(nb, course / "dashboards.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with jupyterlab(course, tmp_path) as (base, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        try:
            open_in_lab(page, base, token, "dashboards.ipynb", "dash")
            wait_for_kernel(base, token)
            prompts = run_all_cells(page)
            assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"Run All stopped early: {prompts}"
            assert page.locator(".jp-OutputArea-output:has-text('Traceback')").count() == 0, "a cell ended in an error"
            page.wait_for_selector(f"{CACHE} .lc-value", state="attached", timeout=60_000)
            page.wait_for_selector(f"{FLEET} .lc-value", state="attached", timeout=60_000)
            assert page.locator("text=Error displaying widget").count() == 0, "a widget failed to render"

            # lesson 07: starts at the lesson's 1,000 entries; the labels fit; typed 5,000 and a keyboard step
            assert not labels_cut_short(page, CACHE), labels_cut_short(page, CACHE)
            for s, size, share in ((1.0, 1000, 0.8), (1.0, 5000, 0.8), (1.05, 5000, 0.8)):
                if size == 5000 and s == 1.0:
                    old = values_in(page, CACHE)
                    type_into_readout(page, CACHE, "cache_entries", 5000)
                    wait_for_values(page, CACHE, old)
                elif s == 1.05:
                    old = values_in(page, CACHE)
                    page.locator(f"{CACHE} .lc-control-zipf_s .noUi-handle").first.focus()
                    page.keyboard.press("ArrowRight")
                    wait_for_values(page, CACHE, old)
                want = queries.what_if(zipf_s=s, cache_size=size, repeated_share=share)
                shown = {k.removeprefix("caching."): float(v) for k, v in values_in(page, CACHE).items()}
                for key, value in shown.items():
                    assert math.isclose(value, want[key], rel_tol=1e-12), (s, size, key, value, want[key])
                texts = texts_in(page, CACHE)
                assert texts["caching.usd_per_day_cached"] == money.usd(want["usd_per_day_cached"]), texts
            # the label and its value do not run into each other
            gap = page.evaluate(f"""() => {{
                const v = document.querySelector('{CACHE} .lc-value[data-key="caching.usd_per_day_cached"]');
                                        const r = document.createRange();  // the label's text, not its cell
                                        r.selectNodeContents(v.closest('tr').querySelector('td'));
                                        return v.getBoundingClientRect().left - r.getBoundingClientRect().right; }}""")
            assert gap >= 8, f"the value sits {gap:.0f} px from its label"

            # lesson 02: a keyboard step on the GPUs, a typed single day; shown = costs.fleet_summary(shown inputs)
            assert not labels_cut_short(page, FLEET), labels_cut_short(page, FLEET)
            old = values_in(page, FLEET)
            page.locator(f"{FLEET} .lc-control-n_gpus .noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            wait_for_values(page, FLEET, old)
            old = values_in(page, FLEET)
            type_into_readout(page, FLEET, "days", 1)
            wait_for_values(page, FLEET, old)
            shown = {k: float(v) for k, v in values_in(page, FLEET).items()}
            inputs = {k.removeprefix("input."): v for k, v in shown.items() if k.startswith("input.")}
            assert inputs["days"] == 1 and inputs["n_gpus"] == costs.SEED.n_gpus + 500, inputs
            want = costs.fleet_summary(**inputs)
            for key, value in shown.items():
                if not key.startswith("input."):
                    assert value == want[key], (key, value, want[key])
            texts = texts_in(page, FLEET)
            assert texts["usd"] == money.usd(want["usd"]), texts
            assert texts["days_for_published"] == f"{want['days_for_published']:,.0f}", texts
            for text in texts.values():
                assert not SCIENTIFIC_MONEY.search(text) and not NOT_A_NUMBER.search(text), text
            wait_for_kernel(base, token)
            page.wait_for_timeout(1_000)
            page.locator(CACHE).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lesson07-cache-what-if.png"))
            page.locator(FLEET).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "lesson02-fleet.png"))
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "lesson07-02-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
