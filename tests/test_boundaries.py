"""The core (engine, harness, agent, backends, hardware) must never import Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "autoresearch"
CORE = [PKG / "engine", PKG / "harness", PKG / "agent", PKG / "backends", PKG / "training", PKG / "hardware.py"]


def _core_files() -> list[Path]:
    files: list[Path] = []
    for item in CORE:
        files += sorted(item.rglob("*.py")) if item.is_dir() else [item]
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_core_source_has_no_textual_import() -> None:
    offenders = []
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
                names = [node.module]  # relative: catch `from ..tui import x`
            offenders += [f"{path.relative_to(PKG)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in ("textual", "tui") or ".tui" in n or n.startswith("autoresearch.tui")]
    assert not offenders, offenders


def test_importing_the_core_loads_no_textual() -> None:
    mods = [_module_name(p) for p in _core_files()]
    mods = [m for m in mods if not m.endswith(".mlx")]  # optional backend: covered by its own tests
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'textual' or k.startswith(('textual.', 'autoresearch.tui')))\n"
        "print(len(bad)); print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(mods) >= 5


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file, lazy imports included)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):  # a module's own package
                    graph[name].add(target)
    return graph


def test_imports_have_no_cycles() -> None:
    graph = _import_graph()
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt, path + [nxt])
        seen[node] = 2

    for start in sorted(graph):
        if start not in seen:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


# Layers, from the top: cli/tui -> engine -> agent, training -> backends -> harness, hardware, paths. A module
# may import its own layer and the layers below, never one above.
_NEVER = {
    "autoresearch.harness": ("autoresearch.engine", "autoresearch.agent", "autoresearch.training", "autoresearch.backends",
                             "autoresearch.cli", "autoresearch.tui", "autoresearch.doctor"),
    "autoresearch.training": ("autoresearch.engine", "autoresearch.agent", "autoresearch.cli", "autoresearch.tui"),
    "autoresearch.agent": ("autoresearch.engine", "autoresearch.training", "autoresearch.cli", "autoresearch.tui"),
    "autoresearch.backends": ("autoresearch.engine", "autoresearch.agent", "autoresearch.training", "autoresearch.cli",
                              "autoresearch.tui"),
    "autoresearch.engine": ("autoresearch.cli", "autoresearch.tui"),
    "autoresearch.hardware": ("autoresearch.engine", "autoresearch.agent", "autoresearch.training", "autoresearch.cli",
                              "autoresearch.tui"),
}


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for module, targets in _import_graph().items():
        for layer, forbidden in _NEVER.items():
            if module == layer or module.startswith(layer + "."):
                wrong += [f"{module} imports {t}" for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden)]
    assert not wrong, wrong
