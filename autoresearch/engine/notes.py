"""Steering notes: what the user tells the researcher of a live run ("try a smaller batch").

A note is a ``note_added`` event in the run's ledger (with its time), in force until a ``note_removed``. The
engine includes the notes in force in every proposal it asks for (an agent that cannot read them, the search
agent, says so in the run's log). Any client adds or removes them: the dashboard, ``autoresearch note``.
"""

from __future__ import annotations

import uuid

from .events import NoteAdded, NoteRemoved
from .experiments import Note
from .ledger import Ledger
from .rundir import RunDir, RunError

MAX_CHARS = 2000


def notes(run: RunDir) -> list[Note]:
    """The notes in force, oldest first."""
    return Ledger(run.path, writable=False).notes()


def add(run: RunDir, text: str) -> Note:
    text = " ".join(text.split())
    if not text:
        raise RunError("a note needs some text")
    if len(text) > MAX_CHARS:
        raise RunError(f"a note is at most {MAX_CHARS} characters (this one has {len(text)})")
    note = NoteAdded(id=uuid.uuid4().hex[:8], text=text)
    stored = Ledger(run.path).append(note)
    return Note(note.id, text, stored.get("ts"))


def remove(run: RunDir, which: str) -> Note:
    """Remove a note by its id, or by its number as listed (1 = the oldest)."""
    ledger = Ledger(run.path)
    current = ledger.notes()
    found = next((n for n in current if n.id == which), None)
    if found is None and which.isdigit() and 1 <= int(which) <= len(current):
        found = current[int(which) - 1]
    if found is None:
        listed = ", ".join(f"{i} ({n.id})" for i, n in enumerate(current, 1)) or "none"
        raise RunError(f"no note {which!r} in force (notes: {listed})")
    ledger.append(NoteRemoved(id=found.id))
    return found


def reads_notes(agent_spec: str | None) -> bool:
    """Whether a run's agent reads notes (the search agents do not), from its spec alone."""
    return not (agent_spec or "").split(":")[0] == "search"
