"""Name resolution for the integrity check: what the harness exposes, and what the script's names stand for.

Two parts:

- The harness's own declarations (``autoresearch.harness.api``): the public names of each backend's
  harness module and the session's internal attribute names. They are read from that dependency-free
  module, so the check imports neither torch nor mlx.
- ``Scope``: what each expression of the script may stand for, as canonical dotted paths
  (``torch.nn.functional.gelu``, ``@session.config``, ``autoresearch.harness.torch.batches``), and the string
  an expression folds to when it is computed from constants (``"AUTO" + "RESEARCH_"``).

Names are tracked through aliases (``S = H``, ``cfg = H.config``, ``t = time``), containers (``[H][0]``),
loops, ``with ... as``, function and lambda arguments (also defaults and ``functools.partial``), return values
and object attributes holding the session (``self.h = H``), scope-insensitively: a little conservative, never
silent on the obvious paths.
"""

from __future__ import annotations

import ast
from collections import Counter

from ..api import BACKEND_API, SESSION_INTERNALS
from .rules import BACKENDS, SESSION_NAME

HARNESS_MODULES = frozenset(f"autoresearch.harness.{b}" for b in BACKENDS)
UNKNOWN = "\x00"  # an unknown piece of a partially folded string

_PUBLIC = {backend: frozenset(names) for backend, names in BACKEND_API.items()}
_SESSION_INTERNALS = frozenset(SESSION_INTERNALS)


def public_names(backend: str = "torch") -> frozenset[str]:
    """The harness module's ``__all__``, as ``autoresearch.harness.api`` declares it (no torch/mlx import)."""
    return _PUBLIC[backend]


def session_private_names() -> frozenset[str]:
    """Private attribute and method names of the harness's session classes (declared in harness.api)."""
    return _SESSION_INTERNALS


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def is_tracked(c: str) -> bool:
    """The session, the harness, or something reached from them (not a container that merely holds them)."""
    if c.endswith("[]"):
        return False
    return c.startswith(SESSION_NAME) or c == "autoresearch" or c.startswith("autoresearch.")


def container_of(found: frozenset[str]) -> frozenset[str]:
    return frozenset(c + "[]" for c in found if len(c) < 200)


def element_of(found: frozenset[str]) -> frozenset[str]:
    """An item of a literal container is what was put in; an item of anything else lies inside it ({})."""
    return frozenset(c[:-2] if c.endswith("[]") else c + "{}" for c in found if len(c) < 200)


def is_module_path(c: str) -> bool:
    """A canonical path into an imported module (not one rooted at the session, ``@session``)."""
    return not c.startswith("@")


def selfish(node: ast.AST) -> bool:
    """self / cls / super(): a class's own object."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


class Scope:
    """What the names and expressions of one parsed script stand for.

    Built in one pass over the tree (parents, definitions, bindings), then aliases are propagated to a fixed
    point. ``resolve`` gives the canonical paths an expression may stand for, ``fold`` the string it
    evaluates to, ``is_builtin`` whether a bare name is still the builtin.
    """

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parent: dict[ast.AST, ast.AST] = {}
        self.alias: dict[str, set[str]] = {}
        self.consts: dict[str, str] = {}
        self.funcs: dict[str, list[ast.AST]] = {}
        self.methods: dict[str, list[ast.AST]] = {}
        self.classes: dict[str, list[ast.ClassDef]] = {}
        self.returns: dict[ast.AST, list[ast.expr]] = {}
        self.events: list[tuple[str, ast.expr, bool]] = []  # (name, value, value is a container of it)
        self.wild: dict[str, set[str]] = {}  # attribute name -> what any `x.name` may hold (the session)
        self.import_bound: set[str] = set()
        self.other_bound: set[str] = set()
        self._cache: dict[int, frozenset[str]] = {}
        self.collect()
        self.resolve_aliases()

    # -- pass 1: parents, definitions, bindings ---------------------------------------------------------
    def collect(self) -> None:
        """Parents, function/method/class definitions, return values, bindings and constant strings."""
        calls: list[ast.Call] = []
        stores: Counter[str] = Counter()
        single_assigns: list[tuple[str, ast.expr]] = []
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if isinstance(node, ast.Lambda):
                    self.returns[node] = [node.body]
                else:
                    where = self.methods if isinstance(self.parent.get(node), ast.ClassDef) else self.funcs
                    where.setdefault(node.name, []).append(node)
                    self.returns.setdefault(node, [])
                    self.other_bound.add(node.name)
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                    self.other_bound.add(arg.arg)
                    stores[arg.arg] += 1
                positional = a.posonlyargs + a.args
                for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
                    self.events.append((arg.arg, default, False))
                for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                    if default is not None:
                        self.events.append((arg.arg, default, False))
            elif isinstance(node, ast.ClassDef):
                self.classes.setdefault(node.name, []).append(node)
                self.other_bound.add(node.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self._bind_import(a.asname, a.name)
                    else:
                        root = a.name.split(".")[0]
                        self._bind_import(root, root)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self._bind_import(a.asname or a.name, f"{node.module}.{a.name}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
                if node.value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                owner = self.parent.get(node)
                for target in targets:
                    self._bind_target(target, node.value)
                    if isinstance(owner, ast.ClassDef) and isinstance(target, ast.Name):
                        # class attributes: reachable as Class.name and self.name
                        self.events.append((f"{owner.name}.{target.id}", node.value, False))
                        self.events.append((f"self.{target.id}", node.value, False))
                if len(targets) == 1 and isinstance(targets[0], ast.Name):
                    single_assigns.append((targets[0].id, node.value))
                    if isinstance(node.value, ast.Lambda):
                        self.funcs.setdefault(targets[0].id, []).append(node.value)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                if isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)):
                    for elt in node.iter.elts:
                        self._bind_target(node.target, elt)
                elif dotted(node.target):
                    self.events.append((dotted(node.target), node.iter, True))  # an element of the iterable
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._bind_target(item.optional_vars, item.context_expr)
            elif isinstance(node, ast.Call):
                calls.append(node)
            elif isinstance(node, ast.Return) and node.value is not None:
                owner = self.parent.get(node)
                while owner is not None and not isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    owner = self.parent.get(owner)
                if owner is not None:
                    self.returns.setdefault(owner, []).append(node.value)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                stores[node.id] += 1
                self.other_bound.add(node.id)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.other_bound.add(node.name)
        for call in calls:
            self._bind_call_arguments(call.func, call.args, call.keywords)
            if call.args and "functools.partial" in self.resolve(call.func, cache=False):
                self._bind_call_arguments(call.args[0], call.args[1:], call.keywords)
        # names bound exactly once to a string: their value, for folding computed names
        for _ in range(2):
            for name, value in single_assigns:
                if stores[name] == 1 and name not in self.consts:
                    folded = self.fold(value)
                    if folded is not None:
                        self.consts[name] = folded

    def _bind_import(self, name: str, path: str) -> None:
        self.alias.setdefault(name, set()).add(path)
        self.import_bound.add(name)

    def _bind_target(self, target: ast.AST, value: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self._bind_target(t, v)
            return
        key = dotted(target)
        if key:
            self.events.append((key, value, False))

    def _bind_call_arguments(self, f: ast.expr, args: list[ast.expr], keywords: list[ast.keyword]) -> None:
        """Parameters of local functions/methods called with an argument take that argument's names."""
        targets: list[tuple[ast.AST, int]] = []
        if isinstance(f, ast.Lambda):
            targets.append((f, 0))
        elif isinstance(f, ast.Name):
            targets += [(d, 0) for d in self.funcs.get(f.id, [])]
            for cls in self.classes.get(f.id, []):
                targets += [(d, 1) for d in cls.body if isinstance(d, ast.FunctionDef) and d.name == "__init__"]
        elif isinstance(f, ast.Attribute):
            targets += [(d, 1) for d in self.methods.get(f.attr, [])]
        for d, offset in targets:
            a = d.args
            positional = a.posonlyargs + a.args
            for i, arg in enumerate(args):
                if isinstance(arg, ast.Starred):
                    break
                if offset + i < len(positional):
                    self.events.append((positional[offset + i].arg, arg, False))
                elif a.vararg is not None:
                    self.events.append((a.vararg.arg, arg, False))
            names = {p.arg for p in positional + a.kwonlyargs}
            for kw in keywords:
                if kw.arg in names:
                    self.events.append((kw.arg, kw.value, False))

    def resolve_aliases(self) -> None:
        """Propagate the bindings until nothing changes (at most 8 rounds)."""
        for _ in range(8):
            changed = False
            for key, value, element in self.events:
                found = self.resolve(value, cache=False)
                if element:
                    found = element_of(found)
                if found:
                    have = self.alias.setdefault(key, set())
                    if not found <= have:
                        have |= found
                        changed = True
                    if "." in key:  # an object attribute holding the session or the harness itself
                        whole = {c for c in found if c == SESSION_NAME or c in HARNESS_MODULES}
                        if whole and not whole <= self.wild.get(key.rsplit(".", 1)[1], set()):
                            self.wild.setdefault(key.rsplit(".", 1)[1], set()).update(whole)
                            changed = True
            if not changed:
                break

    # -- names -> canonical paths -----------------------------------------------------------------------
    def resolve(self, node: ast.AST, cache: bool = True, depth: int = 0) -> frozenset[str]:
        """Canonical names an expression may stand for: 'torch.nn.functional', '@session.config', ..."""
        if cache:
            hit = self._cache.get(id(node))
            if hit is not None:
                return hit
        out = self._resolve(node, depth)
        if cache:
            self._cache[id(node)] = out
        return out

    def _resolve(self, node: ast.AST, depth: int) -> frozenset[str]:
        if depth > 8:
            return frozenset()
        if isinstance(node, ast.Name):
            return frozenset(self.alias.get(node.id, ()))
        if isinstance(node, ast.Attribute):
            found = set()
            key = dotted(node)
            if key and key in self.alias:
                found |= self.alias[key]
            found |= {f"{b}.{node.attr}" for b in self._resolve(node.value, depth + 1) if len(b) < 200}
            found |= self.wild.get(node.attr, set())
            return frozenset(found)
        if isinstance(node, ast.Subscript):
            return element_of(self._resolve(node.value, depth + 1))
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            inner = frozenset().union(*(self._resolve(e.value if isinstance(e, ast.Starred) else e, depth + 1)
                                        for e in node.elts))
            return container_of(inner)
        if isinstance(node, ast.Dict):
            return container_of(frozenset().union(*(self._resolve(v, depth + 1) for v in node.values)))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            return container_of(self._resolve(node.elt, depth + 1))
        if isinstance(node, ast.DictComp):
            return container_of(self._resolve(node.value, depth + 1))
        if isinstance(node, ast.Call):
            return self._resolve_call(node, depth)
        if isinstance(node, ast.NamedExpr):
            return self._resolve(node.value, depth + 1)
        if isinstance(node, ast.IfExp):
            return self._resolve(node.body, depth + 1) | self._resolve(node.orelse, depth + 1)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self._resolve(v, depth + 1) for v in node.values))
        if isinstance(node, ast.Await):
            return self._resolve(node.value, depth + 1)
        return frozenset()

    def _resolve_call(self, node: ast.Call, depth: int) -> frozenset[str]:
        f = node.func
        funcs = self._resolve(f, depth + 1)
        if any(c in {f"autoresearch.harness.{b}.start" for b in BACKENDS} for c in funcs):
            return frozenset({SESSION_NAME})
        if isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) >= 2:
            name = self.fold(node.args[1])
            if name is not None:
                return frozenset(f"{b}.{name}" for b in self._resolve(node.args[0], depth + 1))
        if node.args and (funcs & {"copy.copy", "copy.deepcopy", "contextlib.nullcontext"} or (
                isinstance(f, ast.Name) and f.id in ("iter", "list", "tuple", "set", "frozenset", "sorted",
                                                     "reversed"))):
            return self._resolve(node.args[0], depth + 1)  # the same object, or a container of the same items
        if isinstance(f, ast.Name) and f.id == "next" and node.args:
            return element_of(self._resolve(node.args[0], depth + 1))
        if "typing.cast" in funcs and len(node.args) == 2:
            return self._resolve(node.args[1], depth + 1)
        defs: list[ast.AST] = []
        if isinstance(f, ast.Lambda):
            defs = [f]
        elif isinstance(f, ast.Name):
            defs = self.funcs.get(f.id, [])
        elif isinstance(f, ast.Attribute):
            defs = self.methods.get(f.attr, [])
        found: set[str] = set()
        for d in defs:
            for value in self.returns.get(d, []):
                found |= self._resolve(value, depth + 2)
        return frozenset(found)

    def fold(self, node: ast.AST, partial: bool = False) -> str | None:
        """The string an expression evaluates to, when the check can tell (partial: unknown parts as \\x00)."""
        unknown = UNKNOWN if partial else None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else unknown
        if isinstance(node, ast.Name):
            return self.consts.get(node.id, unknown)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                left, right = self.fold(node.left, partial), self.fold(node.right, partial)
                return left + right if left is not None and right is not None else unknown
            if isinstance(node.op, ast.Mod) and partial:
                return (self.fold(node.left, True) or "") + UNKNOWN
            return unknown
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(str(v.value))
                elif isinstance(v, ast.FormattedValue):
                    inner = self.fold(v.value, partial) if v.format_spec is None and v.conversion in (-1, 115) else None
                    if inner is None:
                        if not partial:
                            return None
                        inner = UNKNOWN
                    parts.append(inner)
            return "".join(parts)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            s = node.slice
            if s.lower is None and s.upper is None and isinstance(s.step, ast.UnaryOp) and \
                    isinstance(s.step.op, ast.USub) and isinstance(s.step.operand, ast.Constant) and \
                    s.step.operand.value == 1:
                base = self.fold(node.value, partial)
                return base[::-1] if base is not None else unknown
            return unknown
        if isinstance(node, ast.Call):
            return self._fold_call(node, partial)
        return unknown

    def _fold_call(self, node: ast.Call, partial: bool) -> str | None:
        unknown = UNKNOWN if partial else None
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr in ("upper", "lower", "strip", "lstrip", "rstrip", "casefold", "title", "capitalize",
                          "swapcase") and not node.args:
                base = self.fold(f.value, partial)
                return getattr(base, f.attr)() if base is not None else unknown
            if f.attr == "replace" and len(node.args) == 2:
                base = self.fold(f.value, partial)
                old, new = self.fold(node.args[0]), self.fold(node.args[1])
                if base is not None and old is not None and new is not None:
                    return base.replace(old, new)
                return unknown
            if f.attr == "join" and len(node.args) == 1:
                sep = self.fold(f.value, partial)
                items = self._fold_items(node.args[0], partial)
                return sep.join(items) if sep is not None and items is not None else unknown
            if f.attr == "format" and partial:
                return (self.fold(f.value, True) or "") + UNKNOWN
            return unknown
        if isinstance(f, ast.Name) and len(node.args) == 1 and not node.keywords:
            if f.id == "str":
                return self.fold(node.args[0], partial)
            if f.id == "chr" and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, int):
                try:
                    return chr(node.args[0].value)
                except (ValueError, OverflowError):
                    return unknown
        return unknown

    def _fold_items(self, node: ast.AST, partial: bool) -> list[str] | None:
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.fold(e, partial) for e in node.elts]
            return None if any(i is None for i in items) else items  # type: ignore[return-value]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "reversed" and len(node.args) == 1:
                base = self.fold(node.args[0], partial)
                if base is not None:
                    return list(reversed(base))
                inner = self._fold_items(node.args[0], partial)
                return list(reversed(inner)) if inner is not None else None
            if node.func.id == "map" and len(node.args) == 2 and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id == "chr" and isinstance(node.args[1], (ast.List, ast.Tuple)):
                out = []
                for e in node.args[1].elts:
                    if not (isinstance(e, ast.Constant) and isinstance(e.value, int)):
                        return [UNKNOWN] if partial else None
                    out.append(chr(e.value))
                return out
        return [UNKNOWN] if partial else None

    def is_builtin(self, name: str) -> bool:
        """A name refers to the builtin unless only imports bind it (``from torch import compile``)."""
        return name not in self.import_bound or name in self.other_bound
