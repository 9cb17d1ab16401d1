"""The package's shape: every import points down the data flow, no cycles, no interface probes."""

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "stream_predictor"
# Lower layers never import higher ones. Modules of one layer may import each other, without cycles.
LAYERS = ["errors", "files", "paths", "config", "keymaps", "onnx_format", "session", "sources", "model", "runtime", "sinks",
          "games", "learn", "tools", "cli"]
TOP = len(LAYERS)  # the package's __init__ and the deprecated module paths beside it


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every stream_predictor module this file imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(f"{target}.{a.name}" for a in node.names if target.startswith("stream_predictor"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stream_predictor"))
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("predictor", "multi", "__main__"):
        return TOP
    return LAYERS.index(parts[1])


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for t in imports(path):
            while t not in modules and "." in t:  # `from .x import name`: the module is x
                t = t.rpartition(".")[0]
            if t != name:
                targets.add(t)
        edges[name] = targets
    return edges


def test_every_import_points_down():
    upward = [f"{m} -> {t}" for m, ts in graph().items() for t in ts if layer(t) > layer(m)]
    assert not upward, upward


def test_no_import_cycles():
    edges, state, cycles = graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in edges.get(m, ()):
            if t.startswith(m + "."):
                continue  # a package importing its own modules (its __init__) is not a cycle
            if state.get(t) == "open":
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_interface_probes_or_hidden_side_effect_imports():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "hasattr(" not in text, path
        assert "noqa: F401" not in text, path
