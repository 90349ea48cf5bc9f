"""The app's keys: every binding has an id, so ``[tui.keymap]`` in the config can remap it.

Defaults are Mac-safe (Ctrl, never Cmd; no ctrl+enter, which most Mac terminals cannot send). The keymap
is checked at start: unknown ids and two bindings of one screen on the same key are reported, not ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from textual.binding import Binding, BindingType


def _b(key: str, action: str, description: str, id: str, *, show: bool = True, priority: bool = False,
       key_display: str | None = None) -> Binding:
    return Binding(key, action, description, show=show, priority=priority, id=id, key_display=key_display)


APP = [
    _b("q", "request_quit", "Quit", "app.quit"),
    _b("question_mark", "show_keys", "Keys", "app.keys", key_display="?"),
]

PICKER = [
    _b("enter", "open_run", "Open", "picker.open"),
    _b("n", "new_run", "New run", "picker.new"),
    _b("r", "refresh", "Refresh", "picker.refresh", show=False),
]

DASHBOARD = [
    _b("p", "toggle_pause", "Pause/resume", "dashboard.pause"),
    _b("x", "stop_after", "Stop after this", "dashboard.stop"),
    _b("X", "stop_now", "Stop now", "dashboard.stop_now", show=False),
    _b("S", "skip", "Skip", "dashboard.skip", show=False),
    _b("R", "resume_engine", "Resume engine", "dashboard.resume_engine", show=False),
    _b("u", "toggle_split", "Unified/split", "dashboard.split", show=False),
    _b("e", "toggle_log", "Engine/training log", "dashboard.log_source"),
    _b("L", "open_pager", "Log in $PAGER", "dashboard.pager", show=False),
    _b("y", "copy_commit", "Copy commit", "dashboard.copy", show=False),
    _b("v", "next_pane", "Next pane", "dashboard.pane"),
    _b("r", "open_review", "Review", "dashboard.review"),
    _b("n", "notes", "Notes", "dashboard.note"),
    _b("escape", "back", "Runs", "dashboard.back"),
]

REVIEW = [
    _b("a", "accept", "Accept", "review.accept"),
    _b("r", "reject", "Reject", "review.reject"),
    _b("u", "unmark", "Unmark", "review.unmark", show=False),
    _b("j", "cursor_down", "Next", "review.next", show=False),
    _b("k", "cursor_up", "Previous", "review.previous", show=False),
    _b("t", "retest", "Re-test", "review.retest"),
    _b("D", "revert", "Revert", "review.revert"),
    _b("x", "export", "Export", "review.export"),
    _b("escape", "back", "Back", "review.back"),
]

NOTES = [
    _b("escape", "dismiss(None)", "Close", "notes.close"),
    _b("delete", "remove_note", "Remove the note", "notes.remove"),
]


@dataclass(frozen=True)
class KeymapProblem:
    kind: str  # unknown | clash
    message: str


def binding_ids(bindings: Iterable[BindingType]) -> dict[str, Binding]:
    return {b.id: b for b in bindings if isinstance(b, Binding) and b.id}


def check_keymap(keymap: dict[str, str], scopes: dict[str, list[Binding]]) -> list[KeymapProblem]:
    """Problems with a user keymap: ids no binding has; keys two bindings of one scope would share.

    ``scopes``: name -> the bindings active together (a screen's, its widgets' and the app's).
    """
    problems: list[KeymapProblem] = []
    known = {b.id for bindings in scopes.values() for b in bindings if b.id}
    for binding_id in sorted(keymap):
        if binding_id not in known:
            problems.append(KeymapProblem("unknown", f"[tui.keymap] {binding_id!r} is not a binding id (see `?` in the app)"))
    for scope, bindings in scopes.items():
        owner: dict[str, str] = {}
        for b in bindings:
            keys = keymap.get(b.id or "", b.key)
            for key in (k.strip() for k in keys.split(",")):
                if not key:
                    continue
                other = owner.get(key)
                if other is not None and other != b.id:
                    problems.append(KeymapProblem("clash", f"[tui.keymap] {key!r} is bound to both {other} and {b.id} "
                                                           f"({scope})"))
                owner.setdefault(key, b.id or b.action)
    return problems
