"""Call rules: builtins, harness calls, copies and file APIs.

``open`` only reads ``__file__``; ``getattr``/``setattr``/``vars``/``type`` are not used on harness objects or
with computed names; harness objects are not copied, sessions are not built by hand, the session protocol
calls are counted (``checker.py`` checks them), ``evaluate_bpb`` scores only val, nothing mutates harness
state through methods, and file APIs get no engine paths.
"""

from __future__ import annotations

import ast

from .access import AccessRules
from .names import is_module_path, is_tracked, selfish
from .report import src
from .rules import (
    BACKENDS,
    BLOCKED,
    DATA_SPLIT,
    DYNAMIC_CODE,
    FILE_API_ROOTS,
    FILE_READ,
    FILE_WRITE,
    FORBIDDEN_PATH,
    HARNESS_MUTATION,
    HARNESS_REFLECTION,
    INTROSPECTION,
    MUTATORS,
    OBFUSCATION,
    PARENT_DIR,
    PATH_FRAGMENTS,
    SESSION_CLASSES,
    SESSION_NAME,
)


class CallRules(AccessRules):
    """Calls. Built on AccessRules: ``getattr(x, "name")`` with a literal name is checked as ``x.name``."""

    def on_call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and self.scope.is_builtin(f.id):
            if f.id == "open":
                self._open(node)
            elif f.id in ("getattr", "hasattr", "setattr", "delattr"):
                self._reflective_builtin(node, f.id)
            elif f.id == "vars":
                if not node.args or not selfish(node.args[0]):
                    tracked = bool(node.args) and any(is_tracked(c) for c in self.scope.resolve(node.args[0]))
                    self.add(node, HARNESS_REFLECTION if tracked else INTROSPECTION,
                             "vars() exposes an object's internals (for the harness session: its clock and counters); "
                             "use its attributes directly.")
            elif f.id == "type":
                if len(node.args) == 1 and any(is_tracked(c) for c in self.scope.resolve(node.args[0])):
                    self.add(node, HARNESS_REFLECTION, "type() of a harness object gives its class, which train.py may "
                                                       "not subclass or patch; use the object's public API.")
                elif len(node.args) == 3:
                    self.add(node, DYNAMIC_CODE, "the three-argument type() builds a class at run time; write a "
                                                 "class statement instead.")
        funcs = self.scope.resolve(f)
        if any(c in {f"autoresearch.harness.{b}.start" for b in BACKENDS} for c in funcs):
            self.start_calls.append(node)
        if (isinstance(f, ast.Attribute) and f.attr == "finish") or any(c == f"{SESSION_NAME}.finish" for c in funcs):
            self.finish_calls += 1
        if (isinstance(f, ast.Attribute) and f.attr == "keep_training") or \
                any(c == f"{SESSION_NAME}.keep_training" for c in funcs):
            self.keep_calls += 1
        args = list(node.args) + [kw.value for kw in node.keywords]
        if funcs & {"copy.copy", "copy.deepcopy"} and node.args and \
                any(is_tracked(c) for c in self.scope.resolve(node.args[0])):
            self.add(node, HARNESS_REFLECTION, "copying a harness object gives a session (or module) whose clock and "
                                               "counters train.py could then change; use the one harness.start() "
                                               "returned.")
        for c in funcs:
            if c.startswith("autoresearch.harness.") and c.rsplit(".", 1)[-1] in SESSION_CLASSES:
                self.add(node, HARNESS_REFLECTION, f"`{src(f)}(...)` builds a second session by hand; only "
                                                   "harness.start() creates the run's session.")
                break
            if c == f"{self.hm}.evaluate_bpb":
                self._evaluate_split(node)
            if c in ("operator.attrgetter", "operator.methodcaller"):
                for a in node.args[:1] if c.endswith("methodcaller") else node.args:
                    name = self.scope.fold(a)
                    if name is None:
                        self.add(node, OBFUSCATION, f"`{c}` with a computed name hides which attribute is used; "
                                                    "write the attribute access directly.")
        if isinstance(f, ast.Attribute) and f.attr in MUTATORS and \
                any(is_tracked(c) for c in self.scope.resolve(f.value)):
            self.add(node, HARNESS_MUTATION, f"`{src(f)}(...)` changes the harness's state (its config or "
                                             "bookkeeping); train.py may only read it.")
        if isinstance(f, ast.Attribute) and f.attr in ("__setattr__", "__delattr__") and node.args and \
                any(is_tracked(c) for c in self.scope.resolve(node.args[0])):
            self.add(node, HARNESS_MUTATION, f"`{src(f)}(...)` on a harness object changes the harness's "
                                             "bookkeeping; train.py may only read it.")
        if (isinstance(f, ast.Name) and f.id == "open") or any(self._file_api(c) for c in funcs):
            self._paths(node, args)

    @staticmethod
    def _file_api(c: str) -> bool:
        """Functions whose string arguments are paths (the engine's records are off limits there)."""
        if c.startswith(("os.environ", "os.getenv")):
            return False
        if c.split(".")[0] in FILE_API_ROOTS:
            return True
        return any(c == p or c.startswith(p + ".") for p in BLOCKED)

    def _reflective_builtin(self, node: ast.Call, name: str) -> None:
        if len(node.args) < 2:
            return
        obj, attr = node.args[0], self.scope.fold(node.args[1])
        recv = self.scope.resolve(obj)
        tracked = any(is_tracked(c) for c in recv)
        if attr is None:
            if tracked:
                self.add(node, HARNESS_REFLECTION, f"{name}() with a computed name on a harness object can reach its "
                                                   "private state; use its public attributes by name.")
            elif any(is_module_path(c) for c in recv):
                self.add(node, OBFUSCATION, f"{name}() with a computed name on a module hides which function is "
                                            f"used; write the attribute directly (e.g. `{src(obj)}.gelu`).")
            else:  # strict: a computed attribute name is how code reaches __globals__, __builtins__ and the rest
                self.add(node, OBFUSCATION, f"{name}() with a computed name hides which attribute is used; name it "
                                            "(`x.name`), or keep the objects in a list or dict (e.g. nn.ModuleList).")
            return
        self._attribute(node, obj, attr)
        if name in ("setattr", "delattr"):
            self._store(node, attr_name=attr, receiver=obj, at=node)

    def _open(self, node: ast.Call) -> None:
        if not node.args:
            self.add(node, FILE_READ, "open() may only read train.py's own source (open(__file__)); the data comes "
                                      "from H.train_batches.")
            return
        mode_node = node.args[1] if len(node.args) > 1 else next(
            (kw.value for kw in node.keywords if kw.arg == "mode"), None)
        mode = "r" if mode_node is None else self.scope.fold(mode_node)
        if mode is None or any(ch in mode for ch in "wax+"):
            self.add(node, FILE_WRITE, "train.py may not write files (open with w/a/x/+ or a computed mode): the "
                                       "harness alone records the run's results.")
        elif not (isinstance(node.args[0], ast.Name) and node.args[0].id == "__file__"):
            self.add(node, FILE_READ, "train.py may not read files other than its own source (open(__file__)): the "
                                      "training data comes only from H.train_batches.")

    def _paths(self, node: ast.Call, args: list[ast.expr]) -> None:
        for arg in args:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    s = sub.value
                    frag = next((p for p in PATH_FRAGMENTS if p in s.lower()), None)
                    if frag is None and PARENT_DIR.search(s):
                        frag = ".."
                    if frag is not None:
                        self.add(node, FORBIDDEN_PATH, f"the path {s[:60]!r} points at the engine's records or outside "
                                                       f"the run directory ({frag!r}); train.py may not touch them.")

    def _evaluate_split(self, node: ast.Call) -> None:
        split = next((kw.value for kw in node.keywords if kw.arg == "split"), None)
        if split is not None and self.scope.fold(split) != "val":
            self.add(node, DATA_SPLIT, "evaluate_bpb may only be called on the val split from train.py: the test "
                                       "split is held out from the agent and the train split is scored by nothing.")
