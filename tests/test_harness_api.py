"""The harness's declared API (autoresearch.harness.api) matches the real modules and session classes.

The integrity check reads these declarations instead of importing torch/mlx, so a name added to the harness
without being declared would be rejected in train.py (or, for the session's internals, not protected).

The rule for the harness modules: every function or class a backend module defines at top level whose name
does not start with ``_`` is for train scripts and must be declared; so must the few harness results and
errors the module re-exports (a script catches or inspects them). Everything else at top level is not for
train scripts: the modules the harness itself imports (torch, numpy, ...), helpers it imports from other
harness modules (``open_eval``, ``Session``, ...) and type aliases such as ``Model``.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.harness import api

HARNESS = Path(__file__).resolve().parent.parent / "autoresearch" / "harness"
REEXPORTS = {"HarnessError", "LogitsError"}  # defined in bpb and session
SESSION_CLASSES = {"session.py": "Session", "torch.py": "TorchSession", "mlx.py": "MLXSession"}
HAS_MLX = importlib.util.find_spec("mlx") is not None


def _tree(name: str) -> ast.Module:
    return ast.parse((HARNESS / name).read_text(), name)


def _defined_public(name: str) -> set[str]:
    """Top-level functions and classes of a harness module whose names do not start with _."""
    return {n.name for n in _tree(name).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_")}


def _imported(name: str) -> set[str]:
    return {a.asname or a.name for n in ast.walk(_tree(name)) if isinstance(n, ast.ImportFrom) for a in n.names}


@pytest.mark.parametrize("backend", ["torch", "mlx"])
def test_declared_names_are_the_modules_own_public_functions_and_classes(backend: str) -> None:
    declared = set(api.BACKEND_API[backend])
    assert len(declared) == len(api.BACKEND_API[backend])  # no duplicates
    assert declared - REEXPORTS == _defined_public(f"{backend}.py")
    assert REEXPORTS <= declared
    assert REEXPORTS <= _imported(f"{backend}.py")


def test_torch_module_all_is_the_declaration() -> None:
    import autoresearch.harness.torch as harness

    assert harness.__all__ == list(api.TORCH_API)
    missing = [n for n in api.TORCH_API if not hasattr(harness, n)]
    assert not missing, missing
    own = {n for n, v in vars(harness).items()
           if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == harness.__name__}
    assert own <= set(api.TORCH_API), own - set(api.TORCH_API)


@pytest.mark.skipif(not HAS_MLX, reason="mlx is not installed")
def test_mlx_module_all_is_the_declaration() -> None:
    import autoresearch.harness.mlx as harness

    assert harness.__all__ == list(api.MLX_API)
    missing = [n for n in api.MLX_API if not hasattr(harness, n)]
    assert not missing, missing
    own = {n for n, v in vars(harness).items()
           if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == harness.__name__}
    assert own <= set(api.MLX_API), own - set(api.MLX_API)


def _session_names() -> set[str]:
    """Methods, class attributes and ``self.x`` fields of the session classes, from their source."""
    names: set[str] = set()
    for module, cls in SESSION_CLASSES.items():
        [node] = [n for n in _tree(module).body if isinstance(n, ast.ClassDef) and n.name == cls]
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(item.name)
            elif isinstance(item, ast.Assign):
                names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and \
                    isinstance(sub.value, ast.Name) and sub.value.id == "self":
                names.add(sub.attr)
    return {n for n in names if not n.startswith("__")}


def test_session_declarations_cover_every_session_name() -> None:
    names = _session_names()
    assert {n for n in names if not n.startswith("_")} == set(api.SESSION_API)
    assert {n for n in names if n.startswith("_")} == set(api.SESSION_INTERNALS)
    assert not set(api.SESSION_API) & set(api.SESSION_INTERNALS)


def test_a_live_torch_session_has_only_declared_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.harness.session import HarnessConfig
    from autoresearch.harness.torch import TorchSession

    config = HarnessConfig(data_dir="", seq_len=8, vocab_size=16, time_budget=1.0, eval_tokens=8, device="cpu")
    monkeypatch.setenv("AUTORESEARCH_ROLE", "serve")  # a session without a data server (the serving role)
    session = TorchSession(config)
    names = {n for n in dir(session) if not n.startswith("__")}
    declared = set(api.SESSION_API) | set(api.SESSION_INTERNALS)
    assert names <= declared, names - declared


def test_the_check_reads_the_declarations() -> None:
    from autoresearch.harness.integrity import public_names
    from autoresearch.harness.integrity.names import session_private_names

    assert public_names("torch") == set(api.TORCH_API)
    assert public_names("mlx") == set(api.MLX_API)
    assert session_private_names() == set(api.SESSION_INTERNALS)


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_harness_does_not_load_the_checker() -> None:
    """train.py imports the harness; the checker is the engine's and stays out of the training process."""
    loaded = _modules_after("import autoresearch.harness.torch")
    assert "autoresearch.harness.torch" in loaded
    assert not [m for m in loaded if "integrity" in m]


def test_the_checker_does_not_load_torch_or_mlx() -> None:
    loaded = _modules_after("from autoresearch.harness.integrity import check_script\n"
                            "check_script('import autoresearch.harness.torch as harness\\nH = harness.start()\\n')")
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "mlx", "numpy")]
