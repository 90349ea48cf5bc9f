"""Attribute rules: what train.py may read from and write to objects and modules.

Reading: no private (``_``) or non-public attributes of the harness and the session, none of the session's
internal names on any object, no reflective dunders, no file or dispatch APIs (``rules.ATTR_RULES``), no
restricted or blocked module attributes. Writing: nothing reached from the harness or the session, no
attributes of imported modules (torch's configuration namespaces excepted), none of the session's
bookkeeping fields on any object.
"""

from __future__ import annotations

import ast

from .context import RuleContext
from .names import is_module_path, is_tracked, selfish
from .report import src
from .rules import (
    ATTR_RULES,
    CONFIG_PREFIXES,
    HARNESS_MUTATION,
    HARNESS_PRIVATE,
    INTROSPECTION,
    MONKEYPATCH,
    ALLOWED_DUNDERS,
    REFLECTIVE_DUNDERS,
    RESTRICTED,
    SESSION_NAME,
    STATE_NAMES,
)


class AccessRules(RuleContext):
    """Attribute reads (``x.name``) and stores (``x.name = ...``, ``x[k] = ...``, ``del``, ``setattr``)."""

    def _attribute(self, node: ast.AST, receiver: ast.AST, attr: str) -> None:
        """Reading ``receiver.attr`` (also used for getattr/hasattr/setattr/delattr with literal names)."""
        recv = self.scope.resolve(receiver)
        tracked = any(is_tracked(c) for c in recv)
        what = f"{src(receiver)}.{attr}"
        if tracked and attr.startswith("_"):
            self.add(node, HARNESS_PRIVATE, f"`{what}` is a private attribute of the harness; train.py may use only "
                                            "its public API (train_batches, keep_training, progress, check_loss, "
                                            "autocast, finish, config fields...).")
        elif self.hm in recv and attr not in self.public:
            self.add(node, HARNESS_PRIVATE, f"`{what}` is not a public name of {self.hm}; use only "
                                            f"{', '.join(sorted(self.public))}.")
        elif not tracked and not selfish(receiver):
            if attr in self.private_names:
                self.add(node, HARNESS_PRIVATE, f"`{what}` names a private attribute of the harness session "
                                                "(its clock, counters or scoring); train.py may not touch it.")
            elif attr in REFLECTIVE_DUNDERS and not self._own_setattr(node):
                self.add(node, INTROSPECTION, f"`{what}` is reflective access that can reach the harness's "
                                              "internals; use plain attributes (and type(x) for a class).")
            elif attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED_DUNDERS:
                self.add(node, INTROSPECTION, f"`{what}` reaches into the interpreter's machinery (dunder attributes); "
                                              "train.py uses plain attributes (super().__init__() is fine).")
        if attr in ATTR_RULES:
            rule, why = ATTR_RULES[attr]
            self.add(node, rule, f"`.{attr}` is not allowed in train.py: it {why}, and a training run touches no "
                                 "files or interpreter state outside the harness.")
        for c in recv:
            if not is_module_path(c) or is_tracked(c):
                continue
            if c in RESTRICTED and attr not in RESTRICTED[c]:
                self._restricted(node, c, attr)
            else:
                self._blocked(node, f"{c}.{attr}", receiver=recv)

    def _own_setattr(self, node: ast.AST) -> bool:
        """``object.__setattr__(self, ...)`` (frozen dataclasses, nn.Module internals) is fine."""
        parent = self.parent.get(node)
        return (isinstance(node, ast.Attribute) and node.attr in ("__setattr__", "__delattr__", "__getattribute__")
                and isinstance(node.value, ast.Name) and node.value.id in ("object", "type")
                and isinstance(parent, ast.Call) and parent.func is node and bool(parent.args)
                and selfish(parent.args[0]))

    def _store(self, target: ast.AST, attr_name: str | None = None, receiver: ast.AST | None = None,
               at: ast.AST | None = None) -> None:
        """Assigning/deleting ``target`` (an Attribute or Subscript), or setattr(receiver, attr_name, ...)."""
        at = at or target
        if receiver is None:
            receiver = target.value  # type: ignore[attr-defined]
            attr_name = target.attr if isinstance(target, ast.Attribute) else None
        recv = self.scope.resolve(receiver)
        what = f"{src(receiver)}.{attr_name}" if attr_name else src(target)
        if any(is_tracked(c) for c in recv):
            if any(c.startswith(SESSION_NAME) for c in recv):
                self.add(at, HARNESS_MUTATION, f"`{what}` changes the harness session, whose fields (clock, token "
                                               "count, config) are the harness's own bookkeeping; train.py may only "
                                               "read them.")
            else:
                self.add(at, HARNESS_MUTATION, f"changing `{what}` would monkeypatch the harness; train.py may only "
                                               "call its public functions.")
            return
        modules = [c for c in recv if is_module_path(c)]
        if modules and "os.environ" not in recv:
            full = [f"{c}.{attr_name}." if attr_name else f"{c}.[]" for c in modules]
            if not all(any(f.startswith(p) for p in CONFIG_PREFIXES) for f in full):
                self.add(at, MONKEYPATCH, f"assigning `{what}` modifies an imported module that the harness also uses "
                                          "to time and score the run; train.py may set only torch config flags "
                                          "(torch.backends.*, torch._dynamo.config.*, torch._inductor.config.*).")
                return
        if attr_name in STATE_NAMES and not selfish(receiver):
            self.add(at, HARNESS_MUTATION, f"`{what}` names a field of the harness session's bookkeeping "
                                           f"({attr_name}); train.py may not write it on any object.")
