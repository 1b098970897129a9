"""The Binder (repo2docker) configuration: files present and sane, requirements parse and resolve.

repo2docker reads only `binder/` when that folder exists, so everything Binder needs must be there. The
resolution checks ask pip (dry run: nothing is installed or written) whether every pinned requirement exists
for Binder's Python on Linux x86-64; they skip, saying why, when the registry cannot be reached.
"""
from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
PYPI = "https://pypi.org/simple"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# requirements.txt lines that only CI needs (tests, notebook validation, the browser test)
TEST_TOOLS = {"pytest", "hypothesis", "nbval", "nbconvert", "nbclient", "pytest-timeout", "playwright"}
# Binder's base image is a recent Ubuntu: any manylinux wheel up to glibc 2.35 runs there.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)] + ["manylinux2014_x86_64"]


def requirement_lines(path: Path = BINDER / "requirements.txt") -> tuple[list[str], list[Requirement]]:
    """(option lines such as --extra-index-url, parsed requirements) of a requirements file."""
    options, reqs = [], []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            reqs.append(Requirement(line))
    return options, reqs


def runtime_python() -> str:
    """'3.11' from binder/runtime.txt ('python-3.11')."""
    m = re.fullmatch(r"python-(\d+\.\d+)", (BINDER / "runtime.txt").read_text().strip())
    assert m, "binder/runtime.txt must read python-X.Y"
    return m.group(1)


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when `url` answers; else the reason it does not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as e:  # the host answered; a HEAD refusal still proves it is reachable
        return None if e.code < 500 else f"{url} answered HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return f"{url} is unreachable from here ({e})"


def pip_dry_run(req_lines: list[str], tmp_path: Path, index: list[str], deps: bool) -> list[dict]:
    """Resolve `req_lines` for Binder's Python/platform with pip, installing nothing; return the report's items."""
    req = tmp_path / "requirements.txt"
    req.write_text("\n".join(req_lines) + "\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
           "--disable-pip-version-check", "--quiet", "--timeout", "20", "--retries", "1",
           # --target is only there because pip demands it with --platform; a dry run writes nothing to it
           "--target", str(tmp_path / "unused"), "--report", str(report),
           "--python-version", runtime_python(), "--implementation", "cp", "--only-binary=:all:",
           *[a for p in PLATFORMS for a in ("--platform", p)], *index, "-r", str(req)]
    if not deps:
        cmd.insert(4, "--no-deps")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pip could not resolve:\n{done.stdout}\n{done.stderr}"
    return json.loads(report.read_text())["install"]


# --- files ---------------------------------------------------------------------------------------------------

def test_binder_files_present():
    for name in ("requirements.txt", "postBuild", "runtime.txt"):
        assert (BINDER / name).is_file(), f"binder/{name} is missing"
    assert (BINDER / "postBuild").stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"


def test_postbuild_installs_lib_without_touching_torch():
    script = (BINDER / "postBuild").read_text()
    assert script.startswith("#!/bin/bash") and "set -euo pipefail" in script
    installs = [line for line in script.splitlines() if "pip install" in line]
    assert installs, "postBuild must pip-install the course's library"
    for line in installs:
        assert "--no-deps" in line and "-e ." in line, f"postBuild must install lib/ editable with --no-deps: {line}"
        assert "torch" not in line
    done = subprocess.run(["bash", "-n", str(BINDER / "postBuild")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_runtime_matches_supported_python():
    version = tuple(map(int, runtime_python().split(".")))
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor.startswith(">="), floor
    assert version >= tuple(map(int, floor[2:].split("."))), f"binder/runtime.txt is older than {floor}"


def test_default_url_opens_lesson_00():
    script = (BINDER / "postBuild").read_text()
    assert "/lab/tree/notebooks/00_start_here.ipynb" in script


# --- requirements ---------------------------------------------------------------------------------------------

def test_requirements_parse_and_pin_cpu_torch():
    try:
        options, reqs = requirement_lines()
    except InvalidRequirement as e:
        pytest.fail(f"binder/requirements.txt has a line pip cannot parse: {e}")
    names = {r.name.lower(): r for r in reqs}
    assert any(CPU_INDEX in o for o in options), "the PyTorch CPU index must be named (--extra-index-url)"
    torch = names.get("torch")
    assert torch is not None, "binder/requirements.txt must pin torch"
    pins = [s for s in torch.specifier if s.operator == "=="]
    assert pins and pins[0].version.endswith("+cpu"), f"torch must be pinned to a +cpu build, got {torch}"
    assert not [n for n in names if n.startswith("nvidia-")], "no CUDA libraries on Binder"


def test_requirements_cover_the_course():
    _, reqs = requirement_lines()
    names = {r.name.lower() for r in reqs}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        assert Requirement(dep).name.lower() in names, f"binder/requirements.txt lacks {dep} (pyproject.toml needs it)"
    root = ROOT / "requirements.txt"
    if root.exists():  # what a learner's install gets, Binder gets too; CI's test tools stay out of the image
        _, local = requirement_lines(root)
        missing = {r.name.lower() for r in local} - names - TEST_TOOLS
        assert not missing, f"binder/requirements.txt lacks {sorted(missing)} from requirements.txt"


def test_requirements_resolve_on_pypi(tmp_path):
    """Every pin except torch exists on PyPI as a wheel for Binder's Python and platform."""
    if reason := reachable(PYPI + "/pip/"):
        pytest.skip(reason)
    _, reqs = requirement_lines()
    lines = [str(r) for r in reqs if r.name.lower() != "torch"]
    items = pip_dry_run(lines, tmp_path, ["--index-url", PYPI], deps=False)
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
    for r in reqs:
        if r.name.lower() != "torch":
            assert r.name.lower() in got and r.specifier.contains(got[r.name.lower()]), (r, got)


def test_cpu_torch_resolves(tmp_path):
    """The pinned +cpu torch exists on the PyTorch CPU index for Binder's Python and platform."""
    if reason := reachable(CPU_INDEX + "/torch/"):
        pytest.skip(reason)
    _, reqs = requirement_lines()
    torch = next(r for r in reqs if r.name.lower() == "torch")
    items = pip_dry_run([str(torch)], tmp_path, ["--index-url", CPU_INDEX], deps=False)
    assert items[0]["metadata"]["version"].endswith("+cpu")


@pytest.mark.slow
def test_requirements_resolve_with_dependencies(tmp_path):
    """The whole tree (torch aside) resolves without conflicts, and nothing in it drags in a CUDA torch."""
    if reason := reachable(PYPI + "/pip/"):
        pytest.skip(reason)
    _, reqs = requirement_lines()
    lines = [str(r) for r in reqs if r.name.lower() != "torch"]
    names = {i["metadata"]["name"].lower() for i in pip_dry_run(lines, tmp_path, ["--index-url", PYPI], deps=True)}
    assert "torch" not in names, "a requirement depends on torch, which pip would take from PyPI (CUDA build)"
    assert not [n for n in names if n.startswith("nvidia-")]

