"""Applying one experiment's change to another version of train.py, line by line, or saying it does not apply.

A change is what turned ``before`` into ``after`` (an experiment's parent script into its own). Applied to
``current`` (the baseline plus other changes, or the best when a change is taken back), each of its edits must
find its lines in ``current`` exactly as in ``before``:

- an edit that replaces or removes lines needs every one of them unchanged in ``current``, in one piece;
- an edit that only inserts lines needs the lines on both sides of the insertion unchanged and still next to
  each other (so an insertion after lines that a left-out change wrote is refused, never put somewhere else).

Edits to neighbouring lines do not conflict (two constants on consecutive lines are two independent changes);
everything else that does not fit is a conflict: None, and nothing half-applied. Pure Python, no git.
"""

from __future__ import annotations

import difflib


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def apply_change(current: str, before: str, after: str) -> str | None:
    """``current`` with the change ``before`` -> ``after`` applied, or None when it does not apply."""
    base, ours, theirs = _lines(before), _lines(current), _lines(after)
    where: dict[int, int] = {}  # a line of ``before`` -> its place in ``current``, for the lines unchanged there
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, base, ours, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                where[i1 + k] = j1 + k
    edits: list[tuple[int, int, list[str]]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, theirs, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:  # replace / delete: the lines it takes out, unchanged and in one piece
            places = [where.get(i) for i in range(i1, i2)]
            if None in places or places != list(range(places[0], places[0] + len(places))):  # type: ignore[arg-type]
                return None
            start, end = places[0], places[-1] + 1  # type: ignore[operator]
        else:  # insert: its neighbours unchanged and still adjacent
            left = where.get(i1 - 1) if i1 > 0 else -1
            right = where.get(i1) if i1 < len(base) else len(ours)
            if left is None or right is None or right != left + 1:
                return None
            start = end = right
        edits.append((start, end, theirs[j1:j2]))
    out = list(ours)
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out[start:end] = new
    return "".join(out)


def changed_lines(before: str, after: str) -> tuple[set[str], set[str]]:
    """(the lines the change removes, the lines it adds), stripped: who touched what, for messages."""
    a, b = _lines(before), _lines(after)
    removed: set[str] = set()
    added: set[str] = set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed.update(line.strip() for line in a[i1:i2])
            added.update(line.strip() for line in b[j1:j2])
    return removed, added
