"""The core (engine, harness, agent, backends, hardware) must never import Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "autoresearch"
CORE = [PKG / "engine", PKG / "harness", PKG / "agent", PKG / "backends", PKG / "hardware.py"]


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
