"""The launch path: badges, the canonical first code cell, Colab set-up under a simulated Colab, stamping.

Colab is simulated by a stub `google.colab` module in sys.modules; `subprocess.run` is replaced by a fake that
records commands and "clones" by creating the folders the course has, so nothing is downloaded or installed.
"""
from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from lifecycle import colab, zoo

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO = colab.Repository(owner="someone", name="course-under-test", branch="dev")


class FakeRun:
    """Stands in for subprocess.run: records each command; `git clone` creates the clone's folders."""

    def __init__(self, fail_clone: bool = False):
        self.calls: list[list[str]] = []
        self.fail_clone = fail_clone

    def __call__(self, cmd, check=False, **kwargs):
        self.calls.append(list(cmd))
        if cmd[:2] == ["git", "clone"]:
            if self.fail_clone:
                raise subprocess.CalledProcessError(128, cmd)
            dest = Path(cmd[-1])
            (dest / "lib").mkdir(parents=True)
            (dest / "notebooks").mkdir()
        return subprocess.CompletedProcess(cmd, 0)

    def named(self, program: str) -> list[list[str]]:
        return [c for c in self.calls if program in c[:3]]


@pytest.fixture
def sandbox(monkeypatch, tmp_path):
    """Restore sys.path, cwd and PYTHONPATH after the test, whatever the cell changed."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/already/there")
    return tmp_path


@pytest.fixture
def on_colab(monkeypatch):
    google = types.ModuleType("google")
    stub = types.ModuleType("google.colab")
    google.colab = stub
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", stub)


@pytest.fixture
def fake_run(monkeypatch):
    run = FakeRun()
    monkeypatch.setattr(subprocess, "run", run)  # both the cell and setup_colab look subprocess.run up when called
    return run


def everything_missing(dist: str) -> str | None:
    """An installed-version lookup for a runtime that lacks every package, protected ones included."""
    return None


def run_cell(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<first cell>", "exec"), namespace)
    return namespace


# --- badges and the first cell --------------------------------------------------------------------------------

def test_badge_urls_come_from_the_repository():
    line = colab.badge_line("notebooks/03_inference.ipynb", REPO)
    assert line.endswith(colab.MARKER)
    lesson = "notebooks/03_inference.ipynb"
    assert f"https://mybinder.org/v2/gh/someone/course-under-test/dev?urlpath=lab/tree/{lesson}" in line
    assert f"https://colab.research.google.com/github/someone/course-under-test/blob/dev/{lesson}" in line
    assert colab.notebook_ref("/anywhere/else/03_inference.ipynb") == "notebooks/03_inference.ipynb"
    with pytest.raises(ValueError, match="ipynb"):
        colab.binder_url("README.md")


def test_first_cell_is_valid_python_with_the_course_header():
    src = colab.first_cell()
    ast.parse(src)
    assert src.splitlines()[0] == colab.HEADER
    assert colab.COURSE.url in src and "--depth" in src
    words = {n.value for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    words |= {n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name)}
    assert not words & {"pip", "install", "torch", "ipywidgets"}, "the cell itself installs nothing"


def test_first_cell_does_nothing_off_colab(sandbox, fake_run, capsys):
    assert "google.colab" not in sys.modules
    before = (list(sys.path), os.getcwd(), os.environ["PYTHONPATH"])
    run_cell(colab.first_cell(REPO, root=str(sandbox)))
    assert fake_run.calls == []
    assert (list(sys.path), os.getcwd(), os.environ["PYTHONPATH"]) == before
    assert capsys.readouterr() == ("", "")
    assert colab.setup_colab() is None
    assert capsys.readouterr() == ("", "")


def test_first_cell_on_colab_clones_installs_and_moves_to_the_lessons(sandbox, on_colab, fake_run, monkeypatch, capsys):
    lacking = {"safetensors", "transformers"}
    versions = {"torch": "2.9.0+cu126", "ipywidgets": "7.7.1", "numpy": "2.0.2"}  # Colab's own builds

    def version(dist):
        return None if dist in lacking else versions.get(dist, None if dist in colab.PROTECTED else "1.0")
    monkeypatch.setattr(colab, "installed_version", version)
    seen_constraints = []
    real_run = fake_run.__call__

    def record_constraints(cmd, check=False, **kw):
        if "--constraint" in cmd:
            seen_constraints.append(Path(cmd[cmd.index("--constraint") + 1]).read_text().split())
        return real_run(cmd, check=check, **kw)
    monkeypatch.setattr(subprocess, "run", record_constraints)

    course = sandbox / REPO.name
    run_cell(colab.first_cell(REPO, root=str(sandbox)))

    clones = fake_run.named("git")
    assert clones == [["git", "clone", "--quiet", "--depth", "1", "--branch", "dev", REPO.url, str(course)]]
    pips = fake_run.named("pip")
    assert len(pips) == 1
    packages = pips[0][pips[0].index("--constraint") + 2:]
    assert packages == ["safetensors", "transformers"], "only what is missing"
    assert seen_constraints == [["torch==2.9.0+cu126", "ipywidgets==7.7.1", "numpy==2.0.2"]]
    assert sys.path[0] == str(course / "lib")
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(course / "lib"), "/already/there"]
    assert Path(os.getcwd()) == course / "notebooks"
    assert "Course ready" in capsys.readouterr().out


def test_rerunning_the_cell_neither_clones_again_nor_duplicates_the_path(sandbox, on_colab, fake_run, monkeypatch):
    monkeypatch.setattr(colab, "installed_version", lambda d: "1.0")
    cell = colab.first_cell(REPO, root=str(sandbox))
    run_cell(cell)
    run_cell(cell)
    lib = str(sandbox / REPO.name / "lib")
    assert len(fake_run.named("git")) == 1
    assert fake_run.named("pip") == [], "nothing is missing, so pip is never called"
    assert sys.path.count(lib) == 1
    assert os.environ["PYTHONPATH"].split(os.pathsep).count(lib) == 1


def test_a_failed_clone_is_an_error_not_a_silent_pass(sandbox, on_colab, monkeypatch):
    monkeypatch.setattr(subprocess, "run", FakeRun(fail_clone=True))
    with pytest.raises(subprocess.CalledProcessError):
        run_cell(colab.first_cell(REPO, root=str(sandbox)))


def test_setup_colab_clones_by_itself_when_called_without_the_cell(sandbox, on_colab, capsys):
    run = FakeRun()
    out = colab.setup_colab(sandbox / "c", repo=REPO, run=run, version=lambda d: "1.0")
    assert out == sandbox / "c" / "notebooks" and run.named("git")[0][-1] == str(sandbox / "c")


def test_protected_packages_are_never_installed():
    needs = ("torch", "ipywidgets", "safetensors")
    assert colab.missing_packages(needs=needs, version=everything_missing) == ["safetensors"]
    assert set(colab.missing_packages(version=everything_missing)).isdisjoint(colab.PROTECTED)
    with pytest.raises(ValueError, match="torch"):
        colab.install_command(["safetensors", "torch"], "/tmp/c.txt")
    assert colab.pin_protected(lambda d: {"torch": "2.5.1"}.get(d)) == ["torch==2.5.1"]


def test_gpu_runtime_picks_the_gpu_preset(monkeypatch):
    assert zoo.teacher_preset(torch.device("cuda")) == "gpu"
    assert zoo.teacher_preset(torch.device("cpu")) == "cpu"
    monkeypatch.delenv("LIFECYCLE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what a Colab T4 runtime reports
    assert zoo.teacher_preset() == "gpu"


# --- stamping -------------------------------------------------------------------------------------------------

def lesson(title: str = "# Lesson 03 — Inference", badge: str = colab.MARKER) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    placeholder = ('# Colab only: fetch the course and make `lifecycle` importable (does nothing elsewhere).\n'
                   'import sys\nif "google.colab" in sys.modules:\n'
                   '    from lifecycle_colab_setup import *  # placeholder, replaced by the launch engineer')
    nb.cells = [nbformat.v4.new_markdown_cell(f"{title}\n{badge}\n\nSome words."),
                nbformat.v4.new_code_cell(placeholder),
                nbformat.v4.new_code_cell("x = 1\nx", outputs=[
                    nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)])]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_stamp_rewrites_only_the_badge_line_and_first_cell(tmp_path):
    path = tmp_path / "03_inference.ipynb"
    nbformat.write(lesson(), path)
    original = nbformat.read(path, as_version=4)
    assert colab.stamp([path], REPO) == [path]
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source == f"# Lesson 03 — Inference\n{colab.badge_line(path, REPO)}\n\nSome words."
    assert nb.cells[1].source == colab.first_cell(REPO)
    assert nb.cells[2] == original.cells[2] and nb.metadata == original.metadata
    first = path.read_bytes()
    assert colab.stamp([path], REPO) == []  # idempotent: the marker stays on the badge line
    assert path.read_bytes() == first
    other = colab.Repository("moved", "elsewhere")
    assert colab.stamp([path], other) == [path] and "moved/elsewhere" in nbformat.read(path, 4).cells[0].source


def test_stamped_badges_render_as_images():
    """The badges must be Markdown images, not text swallowed by an HTML comment block."""
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").render(f"# Lesson 03\n{colab.badge_line('03_inference.ipynb', REPO)}\n")
    assert html.count("<img") == 2 and html.count("<a href=") == 2, html


def test_stamp_checks_every_notebook_before_writing_any(tmp_path):
    good, bad = tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"
    nbformat.write(lesson(), good)
    nbformat.write(lesson(badge="(no marker here)"), bad)
    before = good.read_bytes()
    with pytest.raises(ValueError, match="02_b.ipynb"):
        colab.stamp([good, bad])
    assert good.read_bytes() == before


def test_stamp_command_line(tmp_path, capsys):
    path = tmp_path / "05_batching.ipynb"
    nbformat.write(lesson(), path)
    assert colab.main(["--stamp", str(path)]) == 0
    assert "stamped 1 of 1" in capsys.readouterr().out
    assert nbformat.read(path, 4).cells[1].source == colab.first_cell()


def test_launch_links_list_every_lesson():
    md = colab.launch_links(["notebooks/01_training.ipynb", "notebooks/00_start_here.ipynb"], REPO)
    assert md.startswith(colab.badges("00_start_here.ipynb", REPO))
    assert md.count("| `0") == 2


# --- the committed lessons ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_lesson_starts_with_the_canonical_cells(path):
    nb = nbformat.read(path, as_version=4)
    assert colab.badge_line(path) in nb.cells[0].source.split("\n"), \
        f"{path.name}: badge line is stale; run `python -m lifecycle.colab --stamp notebooks/*.ipynb`"
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == colab.first_cell(), \
        f"{path.name}: first code cell is stale; run `python -m lifecycle.colab --stamp notebooks/*.ipynb`"
    assert nb.cells[1].get("outputs") == [], f"{path.name}: the first cell must print nothing off Colab"


def test_stamping_a_copy_of_every_lesson_is_a_no_op_or_a_clean_rewrite(tmp_path):
    if not NOTEBOOKS:
        pytest.skip("no lessons yet")
    copies = []
    for p in NOTEBOOKS:
        (tmp_path / p.name).write_bytes(p.read_bytes())
        copies.append(tmp_path / p.name)
    before = {p.name: nbformat.read(p, 4) for p in copies}
    colab.stamp(copies)
    for p in copies:
        nb, old = nbformat.read(p, 4), before[p.name]
        assert len(nb.cells) == len(old.cells)
        assert [c.source for c in nb.cells[2:]] == [c.source for c in old.cells[2:]]
