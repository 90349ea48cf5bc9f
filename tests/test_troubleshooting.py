"""The README's troubleshooting section lists every error message the tool prints, and nothing else.

What is scanned (with :mod:`ast`, never regexes over the source), in every module under ``autoresearch/``:

1. **Error calls.** Every call that builds one of the user-facing exceptions, wherever it stands (``raise X(...)``
   but also ``return X(...)`` from helpers such as ``http_failure`` or ``_not_utf8``). The classes are the ones
   the CLI prints as a one-line ``error: <message>`` (``_user_errors`` in ``autoresearch/cli.py``) or that reach
   the user through them: DataError, ConfigError, ProfileError, RunError, AgentError, AgentUnavailable,
   BackendError, ControlError, LaunchError, LedgerError, LedgerCorruptError, plus every class in the package
   that subclasses one of them (found from the ``class`` statements: ReviewError, ExportConflict,
   FormatRejected, ...), and click's exceptions (ClickException, UsageError, BadParameter, ...). The message is
   the first argument.
2. **Messages handed to those calls in a variable.** ``raise AgentError(ready.problem)`` and
   ``raise RunError(st.error)`` carry text written elsewhere: the string ``return``\\ ed by a provider's
   ``problem()`` method, the ``problem`` given to ``Readiness(...)`` and the text assigned to ``state.error``
   (in ``autoresearch/engine/view.py``).
3. **The engine's stop reasons that mean something went wrong**: the strings ``Engine._loop`` in
   ``autoresearch/engine/loop.py`` returns and the ``reason=`` of every ``request_stop(...)`` call there (and in
   ``signals.py``), less
   the ordinary ends in ``NORMAL_STOPS`` (the experiments are done, the user or a signal stopped it).

A message is its text with every placeholder (an f-string's ``{...}``, a non-literal operand of ``+``)
replaced by ``…``; ``a if c else b`` gives two messages. An error call whose message has no literal text of its
own (``f"{what}: {e}"``, ``problem``) only forwards another one: it is not listed, but it must be named in
``FORWARDED`` with where its text comes from, so a new one is looked at rather than silently missed.

**The key** of a message is its first literal run (the text between two placeholders, whitespace-normalised and
stripped) that is at least ``MIN_KEY`` characters long and occurs in no other message; when it has none (short
messages such as ``Ollama at … timed out``, or ``… failed mid-reply: …`` whose only run is also part of
``Ollama failed mid-reply: …``), the key is the whole message with ``…`` for the placeholders. So a key is
recognisable (usually the start of the message), stable under changes of the variable parts, and names exactly
one message: an entry that holds it cannot stand for another message by accident.

**The section** is README.md's ``## Troubleshooting`` up to the next ``## `` heading (or the end); the
environment variable ``TROUBLESHOOTING_FILE`` reads it from another file instead. Its entries are table rows:
every backticked span in a row's first cell is one message as the user sees it, with ``…`` for the variable
parts (and for text left out of a long message). The test asserts that

(a) every message's key appears (whitespace-normalised) in some entry, and
(b) every entry still matches a message of the code: it contains that message's key, and its literal pieces
    (the text between ``…``) occur in the message in order, so an entry whose message was changed or removed
    fails too.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autoresearch"
README = ROOT / "README.md"

HOLE = "\x00"  # a placeholder while scanning; "…" when shown
MIN_KEY = 12

USER_ERRORS = {
    "DataError", "ConfigError", "ProfileError", "RunError", "AgentError", "AgentUnavailable", "BackendError",
    "ControlError", "LaunchError", "LedgerError", "LedgerCorruptError",
}
CLICK_ERRORS = {
    "ClickException", "UsageError", "BadParameter", "FileError", "BadOptionUsage", "BadArgumentUsage",
    "MissingParameter", "NoSuchOption",
}
LOOP = "autoresearch/engine/loop.py"
SIGNALS = "autoresearch/engine/signals.py"  # the stops a signal asks for (request_stop, as in LOOP)
VIEW = "autoresearch/engine/view.py"
# Stop reasons that are an ordinary end, not trouble (each must still exist in the code, see the last test).
NORMAL_STOPS = {
    "… experiment(s) done",
    "stopped by the user",
    "stopped by the user after the experiment",
    "…: stopped after the experiment",
    "…: stopped now",
    "…: stopped while the agent was writing",
}


@dataclass(frozen=True)
class Message:
    text: str  # HOLE for the placeholders
    where: str  # file:line
    kind: str  # the exception class, or "stop reason"
    source: str = ""  # the expression of a message that is not a literal (a forwarded one)

    @property
    def shown(self) -> str:
        return _norm(self.text.replace(HOLE, "…"))

    @property
    def runs(self) -> list[str]:
        return [r for r in (_norm(p) for p in self.text.split(HOLE)) if r]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _text(node: ast.AST) -> str:
    """The literal text of a message expression, HOLE for what is computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("strip", "rstrip", "lstrip") and not node.args):
        return _text(node.func.value)
    return HOLE


def _forwards(text: str) -> bool:
    """A message with no literal text of its own ("…", "…: …") only passes another one on."""
    return len(re.sub(r"\W", "", text.replace(HOLE, ""))) < 4


@dataclass
class _Module:
    """One parsed module, walked once: its classes, calls, assignments and functions."""

    rel: str
    classes: list[ast.ClassDef]
    calls: list[ast.Call]
    assigns: list[ast.Assign]
    functions: list[ast.FunctionDef]


_SOURCES: dict[str, str] = {}
_PARSED: dict[str, _Module] = {}


def _module(rel: str) -> _Module:
    if rel not in _PARSED:
        nodes: dict[type, list] = {ast.ClassDef: [], ast.Call: [], ast.Assign: [], ast.FunctionDef: []}
        for node in ast.walk(ast.parse(_SOURCES[rel], rel)):
            bucket = nodes.get(type(node))
            if bucket is not None:
                bucket.append(node)
        _PARSED[rel] = _Module(rel, nodes[ast.ClassDef], nodes[ast.Call], nodes[ast.Assign], nodes[ast.FunctionDef])
    return _PARSED[rel]


@lru_cache(maxsize=1)
def _modules_and_classes() -> tuple[list[_Module], frozenset[str]]:
    """The modules that can hold a message, and the error classes (the user-facing ones and, to a fixed point,
    every class of the package that subclasses one of them).

    Only a module whose text names one of the classes (or Readiness, a ``def problem``, or is the engine's loop
    or view) can build a message; the others are not parsed, which keeps the test fast. What counts is still
    read from the AST of the modules that are."""
    if not _SOURCES:
        for path in sorted(PACKAGE.rglob("*.py")):
            _SOURCES[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
    classes = set(USER_ERRORS | CLICK_ERRORS)
    while True:
        wanted = [rel for rel, src in _SOURCES.items()
                  if rel in (LOOP, SIGNALS, VIEW) or "Readiness(" in src or "def problem" in src
                  or any(c in src for c in classes)]
        more = {c.name for rel in wanted for c in _module(rel).classes
                if {_name(b) for b in c.bases} & classes} - classes
        if not more:
            return [_module(rel) for rel in wanted], frozenset(classes)
        classes |= more


def _functions(module: _Module, name: str) -> list[ast.FunctionDef]:
    return [f for f in module.functions if f.name == name]


def _returns(fn: ast.FunctionDef) -> list[ast.Return]:
    """The return statements of ``fn`` itself (not of functions nested in it)."""
    found, todo = [], list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


@lru_cache(maxsize=1)
def _scan() -> tuple[Message, ...]:
    modules, classes = _modules_and_classes()
    found: list[Message] = []

    def add(node: ast.AST | None, rel: str, line: int, kind: str) -> None:
        if isinstance(node, ast.IfExp):  # one message or another
            add(node.body, rel, line, kind)
            add(node.orelse, rel, line, kind)
        elif node is not None:
            text = _text(node)
            if _forwards(text):
                if kind in classes:  # an error call whose message is made elsewhere
                    found.append(Message(text, f"{rel}:{line}", kind, ast.unparse(node)))
            else:
                found.append(Message(text, f"{rel}:{line}", kind))

    for mod in modules:
        rel = mod.rel
        for call in mod.calls:
            name = _name(call.func)
            # 1. error calls
            if name in classes and call.args:
                add(call.args[0], rel, call.lineno, name or "")
            # 2. a readiness problem: Readiness(ok, problem)
            elif name == "Readiness":
                problem = call.args[1] if len(call.args) > 1 else next(
                    (k.value for k in call.keywords if k.arg == "problem"), None)
                add(problem, rel, call.lineno, "AgentError (readiness)")
            # 3. the engine's stop reasons given to request_stop
            elif name == "request_stop" and rel in (LOOP, SIGNALS):
                for k in call.keywords:
                    if k.arg == "reason":
                        add(k.value, rel, call.lineno, "stop reason")
        # 2. what a provider's problem() returns; what the view says in state.error
        for fn in _functions(mod, "problem"):
            for ret in _returns(fn):
                add(ret.value, rel, ret.lineno, "AgentError (problem())")
        if rel == VIEW:
            for assign in mod.assigns:
                if any(isinstance(t, ast.Attribute) and t.attr == "error" for t in assign.targets):
                    add(assign.value, rel, assign.lineno, "RunError (state.error)")
        # 3. the strings Engine._loop returns
        if rel == LOOP:
            for fn in _functions(mod, "_loop"):
                for ret in _returns(fn):
                    add(ret.value, rel, ret.lineno, "stop reason")
    return tuple(found)


@lru_cache(maxsize=1)
def messages() -> tuple[Message, ...]:
    """Every message of the code that has text of its own (forwarded ones left out), normal stops left out."""
    return tuple(m for m in _scan() if not m.source and not (m.kind == "stop reason" and m.shown in NORMAL_STOPS))


@lru_cache(maxsize=1)
def keys() -> dict[str, str]:
    """The key of each distinct message as shown (see the module docstring)."""
    runs = {m.shown: m.runs for m in messages()}
    out = {}
    for whole, parts in runs.items():
        unique = [r for r in parts if len(r) >= MIN_KEY and not any(r in other for other in runs if other != whole)]
        out[whole] = unique[0] if unique else whole
    return out


# Error calls whose message is made elsewhere: (file, the message expression) -> where its text is scanned.
FORWARDED = {
    ("autoresearch/agent/anthropic.py", "problem"): "the provider's problem(), scanned",
    ("autoresearch/cli.py", "ready.problem + ('; then run again.' if ready.unreachable else '')"):
        "Readiness(...)'s problem and the providers' problem(), scanned",
    ("autoresearch/engine/report.py", "st.error"): "the view's state.error, scanned",
    ("autoresearch/engine/status.py", "st.error"): "the view's state.error, scanned",
    ("autoresearch/agent/providers.py", "f'{what}: {last}'"): "the provider's name before its last AgentUnavailable",
}


# -- the README side ------------------------------------------------------------------------------------------

CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def section() -> str:
    path = Path(os.environ.get("TROUBLESHOOTING_FILE") or README)
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^## Troubleshooting[ \t]*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"{path} has no '## Troubleshooting' section"
    return match.group(1)


def _cells(row: str) -> list[str]:
    """A table row's cells (GFM: ``\\|`` is a pipe inside a cell, code spans included)."""
    cells, cur, i, row = [], "", 0, row.strip()
    row = row[1:] if row.startswith("|") else row
    while i < len(row):
        if row.startswith("\\|", i):
            cur, i = cur + "|", i + 2
        elif row[i] == "|":
            cells.append(cur)
            cur, i = "", i + 1
        else:
            cur, i = cur + row[i], i + 1
    if cur.strip():
        cells.append(cur)
    return cells


def entries(text: str) -> list[tuple[str, int]]:
    """(message, line in the section) of every backticked span in the first cell of a table row."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("|") or re.fullmatch(r"\s*\|[\s:|-]*", line):
            continue
        cells = _cells(line)
        if not cells:
            continue
        for m in CODE_SPAN.finditer(cells[0]):
            body = m.group(2)
            if body.startswith(" ") and body.endswith(" ") and body.strip():
                body = body[1:-1]
            out.append((_norm(body), n))
    return out


def _matches(entry: str, message: Message) -> bool:
    """The entry's literal pieces (between its …) occur in the message's text, in order."""
    pieces = [p for p in (_norm(s) for s in entry.split("…")) if p]
    pattern = ".*?".join(re.escape(p) for p in pieces)
    return bool(pieces) and re.search(pattern, message.shown, re.S) is not None


# -- the tests ------------------------------------------------------------------------------------------------


def test_the_scan_finds_the_messages() -> None:
    found = messages()
    kinds = {m.kind for m in found}
    assert len(found) > 100 and {"DataError", "RunError", "AgentError", "stop reason", "UsageError"} <= kinds
    assert len(set(keys().values())) == len(keys()), "two messages share a key"


def test_every_message_has_an_entry() -> None:
    listed = [e for e, _ in entries(section())]
    missing = []
    for m in messages():
        key = keys()[m.shown]
        if not any(key in e for e in listed):
            missing.append(f"  {m.where} [{m.kind}] key {key!r}: {m.shown}")
    assert not missing, "messages without an entry in the troubleshooting section:\n" + "\n".join(sorted(missing))


def test_every_entry_is_a_message_of_the_code() -> None:
    stale = []
    for entry, line in entries(section()):
        if not any(keys()[m.shown] in entry and _matches(entry, m) for m in messages()):
            stale.append(f"  line {line} of the section: {entry}")
    assert not stale, "entries that match no message of the code (changed or removed?):\n" + "\n".join(stale)


def test_forwarded_messages_are_known() -> None:
    """An error raised with a message made elsewhere (``raise RunError(text)``) must say where that text is
    scanned: a new one is added to FORWARDED (and, if its text is not scanned yet, to the scan)."""
    found = {(m.where.rsplit(":", 1)[0], m.source) for m in _scan() if m.source}
    assert found == set(FORWARDED), (f"new: {sorted(found - set(FORWARDED))}; "
                                     f"gone: {sorted(set(FORWARDED) - found)}")


def test_normal_stops_still_exist() -> None:
    reasons = {m.shown for m in _scan() if m.kind == "stop reason"}
    assert NORMAL_STOPS <= reasons, f"NORMAL_STOPS lists reasons the engine no longer gives: {NORMAL_STOPS - reasons}"
