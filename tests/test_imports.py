"""The import graph of `lifecycle` has no cycle.

The graph is read from the source with `ast`, not from `sys.modules`, so it sees what running code may import:
`from .x import y`, `from . import x`, `import lifecycle.x`, imports inside functions (late imports), and
`importlib.import_module("lifecycle.x")` with a string literal. A cycle any of these closes fails the test, with the
modules on it named.
"""
from __future__ import annotations

import ast
from pathlib import Path

import lifecycle

ROOT = Path(lifecycle.__file__).parent


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of the tree at `root` ("lifecycle.zoo", ...)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` (file `path`) imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(dotted: str) -> str | None:  # the module itself, or the nearest package above it that exists
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {resolve(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            # `from . import zoo` imports the module lifecycle.zoo; `from .zoo import get` imports lifecycle.zoo
            out |= {f"{source}.{a.name}" if f"{source}.{a.name}" in known else resolve(source) for a in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == \
                "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            out.add(resolve(str(node.args[0].value)))
    return {m for m in out if m is not None and m != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports."""
    found = modules(root)
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search closes, each as the modules on it ([a, b, a])."""
    state, found = {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_lifecycle_import_graph_has_no_cycle():
    graph = import_graph()
    assert "lifecycle.distill" in graph["lifecycle.zoo"]  # the graph sees relative imports
    assert not cycles(graph), "import cycles: " + "; ".join(" -> ".join(c) for c in cycles(graph))


def test_the_graph_sees_late_imports_and_importlib_literals(tmp_path):
    """A cycle closed only by an import inside a function, or by importlib with a literal name, is still found."""
    pkg = tmp_path / "lifecycle"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("import lifecycle.d\n")
    (pkg / "d.py").write_text("import importlib\n\ndef f():\n    return importlib.import_module('lifecycle.c')\n")
    (pkg / "e.py").write_text("from lifecycle import a\n")
    found = cycles(import_graph(pkg))
    assert sorted(tuple(sorted(set(c))) for c in found) == [("lifecycle.a", "lifecycle.b"),
                                                             ("lifecycle.c", "lifecycle.d")]
