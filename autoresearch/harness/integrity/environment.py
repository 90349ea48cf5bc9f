"""Environment and string rules: os.environ, os.getenv, and strings that name the engine's internals.

The engine's ``AUTORESEARCH_*`` variables tell the harness where its config and metrics live, so train.py
may not read or set them, nor mention them in any string (also one built by concatenation, joins or
f-strings); variable names must be literal, and ``os.environ`` is not read or changed wholesale. A string
that names a private attribute of the session is reported as well.
"""

from __future__ import annotations

import ast

from .context import RuleContext
from .names import UNKNOWN
from .rules import ENVIRONMENT, HARNESS_PRIVATE, IDENT_PATH


class EnvironmentRules(RuleContext):
    """Uses of os.environ / os.getenv (and harness.batches), string constants and computed strings."""

    def _canonical_use(self, node: ast.AST) -> None:
        canon = self.scope.resolve(node)
        if not canon:
            return
        if "os.environ" in canon:
            self._environ(node)
        if "os.getenv" in canon:
            parent = self.parent.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node and parent.args):
                self.add(node, ENVIRONMENT, "os.getenv may only be called directly with a literal variable name, so "
                                            "the check can see that no AUTORESEARCH_* variable is read.")
            else:
                self._env_key(parent.args[0], node)
        if f"{self.hm}.batches" in canon:
            self._batches(node)

    def _environ(self, node: ast.AST) -> None:
        parent = self.parent.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            self._env_key(parent.slice, parent)
            return
        if isinstance(parent, ast.Compare) and node in parent.comparators and \
                all(isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops):
            self._env_key(parent.left, parent)
            return
        if isinstance(parent, ast.Attribute) and parent.value is node and parent.attr in ("get", "setdefault", "pop"):
            call = self.parent.get(parent)
            if isinstance(call, ast.Call) and call.func is parent and call.args:
                self._env_key(call.args[0], call)
                return
        self.add(node, ENVIRONMENT, "os.environ may only be used as os.environ[\"NAME\"], os.environ.get(\"NAME\") "
                                    "or \"NAME\" in os.environ with a literal name: reading or changing it wholesale "
                                    "would reach the engine's AUTORESEARCH_* variables.")

    def _env_key(self, key: ast.AST, at: ast.AST) -> None:
        name = self.scope.fold(key)
        if name is None:
            self.add(at, ENVIRONMENT, "environment variable names must be literal strings in train.py, so the check "
                                      "can see that no AUTORESEARCH_* variable is read or changed.")
        elif "autoresearch_" in name.lower():
            self.add(at, ENVIRONMENT, f"`{name}` is one of the engine's AUTORESEARCH_* variables, which tell the "
                                      "harness where its config and metrics live; train.py may not read or set them.")

    def on_constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str):
            return
        s = node.value
        if "autoresearch_" in s.lower():
            self._ar_string(node)
        if IDENT_PATH.match(s) and any(part in self.private_names for part in s.split(".")):
            self.add(node, HARNESS_PRIVATE, f"the string {s!r} names a private attribute of the harness session; "
                                            "train.py may not reach the harness's internals, by name or otherwise.")

    def on_string_expression(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr in ("upper", "lower", "join", "replace", "casefold",
                                                                "swapcase", "title", "capitalize", "format",
                                                                "strip")):
                return
        elif isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Add, ast.Mod)):
            return
        elif isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            return
        folded = self.scope.fold(node, partial=True)
        if folded and "autoresearch_" in folded.lower():
            self._ar_string(node)
        elif folded and UNKNOWN not in folded and IDENT_PATH.match(folded) and \
                any(part in self.private_names for part in folded.split(".")):
            self.add(node, HARNESS_PRIVATE, f"the string {folded!r} names a private attribute of the harness "
                                            "session; train.py may not reach the harness's internals.")

    def _ar_string(self, node: ast.AST) -> None:
        self.add(node, ENVIRONMENT, "a string here names an AUTORESEARCH_* variable, which belongs to the engine (it "
                                    "tells the harness where its config and metrics live); train.py may not "
                                    "mention it.")
