"""The state the integrity check's rule families share, and the reports more than one of them makes.

A ``RuleContext`` holds, for one script and backend: the script's ``Scope`` (what its names stand for), the
harness's names for that backend, the violations found so far and the session-protocol counters. The rule
families (``imports.py``, ``access.py``, ``calls.py``, ``environment.py``) derive from it and ``checker.py``
combines them.
"""

from __future__ import annotations

import ast

from .names import Scope, public_names, session_private_names
from .report import Violation
from .rules import (
    BACKENDS,
    BLOCKED,
    DATA_SPLIT,
    DYNAMIC_CODE,
    FILE_READ,
    FILE_WRITE,
    IMPORT,
    INTROSPECTION,
    OS_RULES,
    RESTRICTED_WHY,
    allowed_modules,
)


class RuleContext:
    """One check of one script: what the rules read (scope, harness names) and what they write (violations)."""

    def __init__(self, tree: ast.Module, backend: str) -> None:
        self.tree = tree
        self.backend = backend
        self.hm = f"autoresearch.harness.{backend}"
        self.other_hms = {f"autoresearch.harness.{b}" for b in BACKENDS if b != backend}
        self.public = public_names(backend)
        self.private_names = session_private_names()
        self.allowed = frozenset(allowed_modules(backend))
        self.scope = Scope(tree)
        self.parent = self.scope.parent
        self.violations: list[Violation] = []
        self.start_calls: list[ast.Call] = []
        self.finish_calls = 0
        self.keep_calls = 0

    def add(self, node: ast.AST | None, rule: str, message: str, line: int | None = None) -> None:
        """Report a violation at ``node`` (or at ``line``, or line 1 for the whole script)."""
        if line is None:
            line = getattr(node, "lineno", 1) if node is not None else 1
        col = getattr(node, "col_offset", 0) if node is not None else 0
        self.violations.append(Violation(line, col, rule, message))

    # -- reports shared by the rule families ---------------------------------------------------------
    def _restricted(self, node: ast.AST, module: str, attr: str) -> None:
        """``module.attr`` of a restricted module (os, sys, gc, inspect, json) outside its allowed names."""
        rule = IMPORT
        if module == "os":
            rule = OS_RULES.get(attr, IMPORT)
        elif module == "sys" and attr in ("modules", "meta_path", "path_hooks", "path_importer_cache"):
            rule = DYNAMIC_CODE
        elif module == "sys" and (attr.startswith("_") or attr in ("settrace", "setprofile")):
            rule = INTROSPECTION
        elif module == "sys" and attr in ("path", "stdin"):
            rule = IMPORT
        elif module in ("gc", "inspect"):
            rule = INTROSPECTION
        elif module == "json":
            rule = FILE_READ if attr == "load" else FILE_WRITE if attr == "dump" else IMPORT
        self.add(node, rule, f"`{module}.{attr}` is not allowed in train.py: {RESTRICTED_WHY[module]}.")

    def _blocked(self, node: ast.AST, path: str, receiver: frozenset[str] = frozenset()) -> None:
        """``path`` under a blocked API (``rules.BLOCKED``), unless its receiver was already reported."""
        for prefix, (rule, why) in BLOCKED.items():
            if path == prefix or path.startswith(prefix + "."):
                if any(r == prefix or r.startswith(prefix + ".") for r in receiver):
                    return  # reported where the chain first reached it
                self.add(node, rule, f"`{prefix}` is not allowed in train.py: it {why}, and a training run only "
                                     "trains on the harness's batches and reports through H.finish.")
                return

    def _batches(self, node: ast.AST) -> None:
        self.add(node, DATA_SPLIT, "harness.batches(...) reads a data split directly, bypassing the session's token "
                                   "count and clock (and exposing the val/test splits); train only on "
                                   "H.train_batches(batch_size).")
