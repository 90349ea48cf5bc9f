"""The integrity checker: one walk over the script's AST that hands each node to its rules.

``check_script`` parses the script and runs a ``Checker``, which combines the rule families (imports,
attribute access, calls, environment and strings) over one shared ``Scope`` (``names.py``), adds the rules
for names, classes and functions, and checks the session protocol at the end: ``harness.start()`` once,
``keep_training()`` and ``finish()`` called.
"""

from __future__ import annotations

import ast

from .calls import CallRules
from .environment import EnvironmentRules
from .imports import ImportRules
from .names import is_tracked
from .report import IntegrityReport, Violation, src
from .rules import (
    BACKENDS,
    DISPATCH,
    DISPATCH_METHODS,
    DYNAMIC_BUILTINS,
    DYNAMIC_CODE,
    FILE_READ,
    HARNESS_REFLECTION,
    MODULE_NAMES_BUILTINS,
    OBFUSCATION,
    REFLECTION_BUILTINS,
    SESSION,
    SYNTAX,
)


def check_script(source: str, *, backend: str = "torch") -> IntegrityReport:
    """Check an agent-written training script before it runs. See the package docstring for the rules."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    try:
        tree = ast.parse(source, filename="train.py")
    except SyntaxError as e:
        line = e.lineno or 1
        msg = f"train.py does not parse ({e.msg}); fix the syntax before anything else."
        return IntegrityReport([Violation(line, max(0, (e.offset or 1) - 1), SYNTAX, msg)], backend)
    except ValueError as e:  # e.g. null bytes
        return IntegrityReport([Violation(1, 0, SYNTAX, f"train.py does not parse ({e}); fix the file.")], backend)
    return IntegrityReport(Checker(tree, backend).run(), backend)


class Checker(ImportRules, CallRules, EnvironmentRules):
    """All the rules over one script: ``run()`` returns its violations, sorted and without duplicates."""

    def run(self) -> list[Violation]:
        for node in ast.walk(self.tree):
            handler = self.HANDLERS.get(type(node))
            if handler is not None:
                handler(self, node)
        self.check_session()
        if "__file__" in self.scope.other_bound or "__file__" in self.scope.import_bound:
            self.add(None, FILE_READ, "train.py may not rebind `__file__`: open(__file__) is the one file read it "
                                      "is allowed, and only for its own source.")
        seen: set[tuple[int, str, str]] = set()
        out = []
        for v in sorted(self.violations, key=lambda v: (v.line, v.col)):
            key = (v.line, v.rule, v.message)
            if key not in seen:
                seen.add(key)
                out.append(v)
        return out

    # -- names, attributes, classes, functions --------------------------------------------------------------
    def on_name(self, node: ast.Name) -> None:
        name = node.id
        if name in DISPATCH_METHODS:
            self._dispatch_method(node)
        if not isinstance(node.ctx, ast.Load):
            return
        if name in MODULE_NAMES_BUILTINS:
            rule, message = MODULE_NAMES_BUILTINS[name]
            self.add(node, rule, message)
            return
        parent = self.parent.get(node)
        called = isinstance(parent, ast.Call) and parent.func is node
        if self.scope.is_builtin(name):
            if name in DYNAMIC_BUILTINS:
                self.add(node, DYNAMIC_CODE, DYNAMIC_BUILTINS[name])
                return
            if name in REFLECTION_BUILTINS and not called:
                self.add(node, OBFUSCATION if name != "open" else FILE_READ,
                         f"`{name}` may only be called directly in train.py (not passed around or renamed), so the "
                         "check can see what it is used on.")
                return
        self._canonical_use(node)

    def on_attribute(self, node: ast.Attribute) -> None:
        self._attribute(node, node.value, node.attr)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._store(node)
        elif isinstance(node.ctx, ast.Load):
            self._canonical_use(node)

    def on_subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._store(node)

    def on_class(self, node: ast.ClassDef) -> None:
        for base in node.bases + [kw.value for kw in node.keywords]:
            canon = self.scope.resolve(base)
            if any(is_tracked(c) for c in canon):
                self.add(base, HARNESS_REFLECTION, f"class {node.name} derives from `{src(base)}`: subclassing the "
                                                   "harness could replace its clock or scoring; use the session "
                                                   "harness.start() returns.")
            elif canon & {"torch.Tensor", "torch._tensor.Tensor", "mlx.core.array"}:
                self.add(base, DISPATCH, f"class {node.name} subclasses a tensor type, which can change how the "
                                         "harness computes the loss on the model's logits; return plain tensors.")

    def on_function(self, node: ast.AST) -> None:
        if node.name in DISPATCH_METHODS:  # type: ignore[attr-defined]
            self._dispatch_method(node)

    def _dispatch_method(self, node: ast.AST) -> None:
        self.add(node, DISPATCH, "__torch_function__/__torch_dispatch__ intercept torch operations, including the "
                                 "harness's loss computation on the logits; train.py may not define them.")

    HANDLERS = {
        ast.Import: ImportRules.on_import,
        ast.ImportFrom: ImportRules.on_import_from,
        ast.Name: on_name,
        ast.Attribute: on_attribute,
        ast.Subscript: lambda self, node: (self.on_subscript(node), self.on_string_expression(node)),
        ast.Call: lambda self, node: (self.on_call(node), self.on_string_expression(node)),
        ast.Constant: EnvironmentRules.on_constant,
        ast.BinOp: EnvironmentRules.on_string_expression,
        ast.JoinedStr: EnvironmentRules.on_string_expression,
        ast.ClassDef: on_class,
        ast.FunctionDef: on_function,
        ast.AsyncFunctionDef: on_function,
    }

    # -- the session protocol -----------------------------------------------------------------------------
    def check_session(self) -> None:
        last = max((getattr(n, "end_lineno", 1) or 1 for n in self.tree.body), default=1)
        if not self.start_calls:
            self.add(None, SESSION, f"train.py never calls harness.start(): `import {self.hm} as harness` and "
                                    "`H = harness.start()` once, because the session owns the data, the clock and "
                                    "the score.")
        for i, call in enumerate(self.start_calls):
            if i > 0:
                self.add(call, SESSION, "harness.start() is called more than once: a run has exactly one session, so "
                                        "the clock and the score cannot be split across sessions.")
            if call.args or call.keywords:
                self.add(call, SESSION, "harness.start() must be called without arguments: the engine provides the "
                                        "run's config and train.py may not choose another.")
            if self._in_loop(call):
                self.add(call, SESSION, "harness.start() is inside a loop or comprehension: call it once, before "
                                        "training.")
        if not self.keep_calls:
            self.add(None, SESSION, line=last, message=
                     "train.py never calls H.keep_training(): the training loop must be `while H.keep_training():` "
                     "so the harness measures the time budget.")
        if not self.finish_calls:
            self.add(None, SESSION, line=last, message=
                     "train.py never calls H.finish(model): without it the harness does not evaluate the model and "
                     "the run has no score.")

    def _in_loop(self, node: ast.AST) -> bool:
        p = self.parent.get(node)
        while p is not None and not isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module)):
            if isinstance(p, (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
                              ast.GeneratorExp)):
                return True
            p = self.parent.get(p)
        return False
