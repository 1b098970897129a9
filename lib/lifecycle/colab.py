"""Launching the course in one click: Binder and Colab badges, the first code cell of every lesson, Colab set-up.

This file is the one place that says where the course lives (`COURSE`: owner, repository, branch). Everything a
learner clicks or runs to launch the course is rendered from it:

- the badge row (Launch Binder, Open in Colab) of the README and of each lesson's first markdown cell;
- the first code cell of every lesson, which on Colab clones the course and makes `lifecycle` importable, and
  anywhere else does nothing and prints nothing (so executed notebooks and nbval stay stable).

    python -m lifecycle.colab --stamp notebooks/*.ipynb    # rewrite each lesson's badge line and first code cell
    python -m lifecycle.colab --links notebooks/*.ipynb    # print the README's badge row and launch table

On Colab, `setup_colab()` installs only what Colab lacks. Colab ships and pins its own torch (with CUDA) and
ipywidgets 7.7; reinstalling either breaks the runtime or the widget frontend, so they are never named to pip,
and pip is held to their installed versions with a constraints file.

The first cell must work before `lifecycle` can be imported, so it carries the clone step itself (a few literal
lines rendered by `first_cell()`), then hands over to `setup_colab()` from the fresh clone.

References: mybinder.org's launch URLs (`/v2/gh/OWNER/REPO/BRANCH?urlpath=lab/tree/PATH`); Colab's GitHub URLs
(`colab.research.google.com/github/OWNER/REPO/blob/BRANCH/PATH`); repo2docker's `binder/` folder convention.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

MARKER = "<!-- badges -->"  # marks the line of each lesson's first markdown cell that carries the badges
HEADER = "# Colab only: fetch the course and make `lifecycle` importable (does nothing elsewhere)."
COLAB_ROOT = "/content"  # Colab's working folder; the course is cloned into COLAB_ROOT/<repository name>
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

# Packages Colab ships and pins. Never reinstalled there: a pip-installed torch drops Colab's CUDA build, and a
# second ipywidgets breaks the widget frontend (Colab serves ipywidgets 7.7's).
PROTECTED = ("torch", "torchvision", "torchaudio", "ipywidgets", "ipykernel", "numpy")
# What the lessons import beyond Colab's defaults, by distribution name. Usually all present; installed if not.
# (No test tools: nbval and pytest are for CI, not for learners.)
COLAB_NEEDS = ("safetensors", "tqdm", "matplotlib", "transformers")


@dataclass(frozen=True)
class Repository:
    """Where the course is published: a GitHub repository and the branch the badges open."""

    owner: str
    name: str
    branch: str = "main"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.owner}/{self.name}"

    @property
    def colab_dir(self) -> str:
        return f"{COLAB_ROOT}/{self.name}"


# The course's home. Change it here (and only here), then re-stamp the notebooks:
#     python -m lifecycle.colab --stamp notebooks/*.ipynb
COURSE = Repository(owner="train-once-serve-millions", name="train-once-serve-millions", branch="main")


# --- badges -------------------------------------------------------------------------------------------------

def notebook_ref(path: str | Path) -> str:
    """The repository-relative path of a lesson (lessons live in `notebooks/`), e.g. 'notebooks/03_inference.ipynb'."""
    path = Path(path)
    if path.suffix != ".ipynb":
        raise ValueError(f"expected a notebook path ending in .ipynb, got {str(path)!r}")
    return f"notebooks/{path.name}"


def binder_url(notebook: str | Path, repo: Repository = COURSE) -> str:
    """mybinder.org link that builds the repository and opens `notebook` in JupyterLab."""
    where = f"{repo.owner}/{repo.name}/{repo.branch}"
    return f"https://mybinder.org/v2/gh/{where}?urlpath=lab/tree/{notebook_ref(notebook)}"


def colab_url(notebook: str | Path, repo: Repository = COURSE) -> str:
    """Colab link that opens `notebook` straight from GitHub."""
    where = f"{repo.owner}/{repo.name}/blob/{repo.branch}"
    return f"https://colab.research.google.com/github/{where}/{notebook_ref(notebook)}"


def badges(notebook: str | Path, repo: Repository = COURSE) -> str:
    """The Markdown badge pair for one lesson: Launch Binder, Open in Colab."""
    return (f"[![Launch Binder]({BINDER_BADGE})]({binder_url(notebook, repo)}) "
            f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook, repo)})")


def badge_line(notebook: str | Path, repo: Repository = COURSE) -> str:
    """The whole badge line of a lesson's first cell. The marker stays, at the end, so stamping again finds it:
    a line that *starts* with `<!--` is a raw HTML block in Markdown, and its badges would show as text."""
    return f"{badges(notebook, repo)} {MARKER}"


# --- the first code cell ------------------------------------------------------------------------------------

def clone_command(dest: str, repo: Repository = COURSE) -> list[str]:
    """The shallow clone of the course's branch into `dest` (history is not needed to run the lessons)."""
    return ["git", "clone", "--quiet", "--depth", "1", "--branch", repo.branch, repo.url, dest]


def first_cell(repo: Repository = COURSE, root: str = COLAB_ROOT) -> str:
    """The exact source of every lesson's first code cell.

    Self-contained: on Colab `lifecycle` is not importable until the clone exists, so the cell clones first
    (once per runtime), puts the clone's `lib/` on the path and calls `setup_colab()` from it. Elsewhere the
    `if` is false and the cell only imports sys. `root` exists for tests; lessons use the default.
    """
    *flags, url, _ = clone_command("DEST", repo)  # the destination is the variable `_course`, not a literal
    q = json.dumps  # double-quoted Python string literals
    return "\n".join([
        HEADER,
        "import sys",
        'if "google.colab" in sys.modules:',
        "    import os, subprocess",
        f"    _course = {q(root + '/' + repo.name)}",
        "    if not os.path.isdir(_course):",
        f"        subprocess.run([{', '.join(map(q, flags))},",
        f"                        {q(url)}, _course], check=True)",
        '    if _course + "/lib" not in sys.path:',
        '        sys.path.insert(0, _course + "/lib")',
        "    from lifecycle.colab import setup_colab",
        "    setup_colab(_course)",
    ])


# --- Colab set-up -------------------------------------------------------------------------------------------

def on_colab() -> bool:
    """True inside a Colab runtime (its kernel has imported `google.colab`)."""
    return "google.colab" in sys.modules


def installed_version(dist: str) -> str | None:
    """Installed version of distribution `dist`, or None when it is absent."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_packages(needs: Iterable[str] = COLAB_NEEDS,
                     version: Callable[[str], str | None] | None = None) -> list[str]:
    """The distributions of `needs` that are not installed; protected ones are never listed, missing or not."""
    version = version or installed_version
    return [d for d in needs if d not in PROTECTED and version(d) is None]


def pin_protected(version: Callable[[str], str | None] | None = None) -> list[str]:
    """pip constraints that hold every installed protected package at its current version."""
    version = version or installed_version
    return [f"{d}=={v}" for d in PROTECTED if (v := version(d)) is not None]


def install_command(packages: list[str], constraints_file: str) -> list[str]:
    """pip install of `packages` only, constrained so that nothing protected can be replaced."""
    if bad := [p for p in packages if p in PROTECTED]:
        raise ValueError(f"refusing to pip-install {bad} on Colab: the runtime ships its own; drop them from the list")
    return [sys.executable, "-m", "pip", "install", "--quiet", "--constraint", constraints_file, *packages]


def _add_to_path(lib: str) -> None:
    """Make the clone's `lib/` importable here and in child processes (torchrun, `python -m lifecycle.bench`)."""
    if lib not in sys.path:
        sys.path.insert(0, lib)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != lib]
    os.environ["PYTHONPATH"] = os.pathsep.join([lib, *parts])


def setup_colab(course_dir: str | Path | None = None, repo: Repository = COURSE,
                run: Callable | None = None, version: Callable[[str], str | None] | None = None) -> Path | None:
    """On Colab: clone the course if needed, install what is missing, make `lifecycle` importable, cd to the lessons.

    Returns the lessons folder. Anywhere else it does nothing, prints nothing and returns None. `run` and
    `version` are the subprocess runner and the installed-version lookup (tests pass fakes).
    """
    if not on_colab():
        return None
    run, version = run or subprocess.run, version or installed_version
    course = Path(course_dir or repo.colab_dir)
    if not course.is_dir():
        run(clone_command(str(course), repo), check=True)
    _add_to_path(str(course / "lib"))
    missing = missing_packages(version=version)
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="colab-constraints-", delete=False) as f:
            f.write("\n".join(pin_protected(version)) + "\n")
        try:
            run(install_command(missing, f.name), check=True)
        finally:
            os.unlink(f.name)
    notebooks = course / "notebooks"
    os.chdir(notebooks)
    installed = f"; installed {', '.join(missing)}" if missing else ""
    print(f"Course ready in {course} (lessons run from {notebooks}{installed}).")
    return notebooks


# --- stamping notebooks -------------------------------------------------------------------------------------

def stamp_notebook(nb, notebook: str | Path, repo: Repository = COURSE) -> bool:
    """Rewrite the badge line of cell 0 and the source of cell 1 of `nb` (an nbformat node) in place.

    Returns True when something changed. Raises ValueError, naming the notebook, when its first two cells are
    not the course's shape (markdown with the badge marker line, then a code cell).
    """
    cells = nb.cells
    if len(cells) < 2 or cells[0].cell_type != "markdown" or cells[1].cell_type != "code":
        raise ValueError(f"{notebook}: expected cell 0 markdown (title + {MARKER!r} line) and cell 1 code")
    lines = cells[0].source.split("\n")
    hits = [i for i, line in enumerate(lines) if MARKER in line]
    if len(hits) != 1:
        raise ValueError(f"{notebook}: cell 0 must hold exactly one line with {MARKER!r}, found {len(hits)}")
    lines[hits[0]] = badge_line(notebook, repo)
    md, code = "\n".join(lines), first_cell(repo)
    changed = md != cells[0].source or code != cells[1].source or bool(cells[1].outputs)
    cells[0].source, cells[1].source, cells[1].outputs = md, code, []  # the cell prints nothing off Colab
    return changed


def stamp(paths: Iterable[str | Path], repo: Repository = COURSE) -> list[Path]:
    """Stamp every notebook in `paths` (all are checked before any is written); return those that changed."""
    import nbformat

    paths = [Path(p) for p in paths]
    books = [(p, nbformat.read(p, as_version=4)) for p in paths]
    changed = [(p, nb) for p, nb in books if stamp_notebook(nb, p, repo)]
    for p, nb in changed:
        nbformat.write(nb, p)
    return [p for p, _ in changed]


def launch_links(paths: Iterable[str | Path], repo: Repository = COURSE) -> str:
    """Markdown for the README: the badge row (opening lesson 00) and one launch row per lesson."""
    paths = sorted(Path(p) for p in paths)
    first = paths[0] if paths else "00_start_here.ipynb"
    rows = ["| lesson | Binder | Colab |", "|---|---|---|"]
    rows += [f"| `{p.stem}` | [launch]({binder_url(p, repo)}) | [open]({colab_url(p, repo)}) |" for p in paths]
    return badges(first, repo) + "\n\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle.colab", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--stamp", action="store_true", help="rewrite the badge line and first code cell")
    action.add_argument("--links", action="store_true", help="print the README's badge row and launch table")
    action.add_argument("--first-cell", action="store_true", help="print the canonical first code cell")
    parser.add_argument("notebooks", nargs="*", help="lesson notebooks, e.g. notebooks/*.ipynb")
    args = parser.parse_args(argv)
    if args.first_cell:
        print(first_cell())
    elif args.links:
        print(launch_links(args.notebooks))
    else:
        if not args.notebooks:
            parser.error("--stamp needs the notebooks to stamp, e.g. notebooks/*.ipynb")
        changed = stamp(args.notebooks)
        print(f"stamped {len(changed)} of {len(args.notebooks)} notebooks" +
              "".join(f"\n  {p}" for p in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
