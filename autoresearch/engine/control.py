"""Steering a running engine through its run directory, from any client (TUI, another shell, a script).

A client queues one command as one file in ``.autoresearch/control.d/`` (written to a temp name, then
renamed: a reader never sees half a command). File names sort by the client's clock and a random id, so
the engine takes commands in the order they were sent, each exactly once (it renames the file away
before reading it), and two commands sent in quick succession are both taken. The engine records each
taken command as a ``control`` event carrying the command's ``id`` and what it did with it, so a client can
show "pause (taken)". Commands: pause, resume, stop (after the current experiment), stop-now, skip
(abandon the current experiment and go on), revert (``index``: take a kept change back) and retest (``index``,
``seeds``: more trainings of a kept change); the engine records those two as ``queued`` with their arguments and
carries them out at the next experiment boundary (a queued one survives an engine restart: see the ledger's
requests).

A ``control`` file (one command) left by an older version is still taken, before the queue.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

COMMANDS = ("pause", "resume", "stop", "stop-now", "skip", "revert", "retest")
QUEUE = "control.d"
LEGACY = "control"


class ControlError(ValueError):
    pass


def queue_dir(state_dir: Path) -> Path:
    return state_dir / QUEUE


def send(state_dir: Path, command: str, **extra: Any) -> dict[str, Any]:
    """Queue ``command`` for the run's engine; returns the message (its ``id`` identifies it in the ledger)."""
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    message = {"command": command, "id": uuid.uuid4().hex[:12], "ts": time.time(), **extra}
    queue = queue_dir(state_dir)
    try:
        queue.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{message['id']}.json"
        tmp = queue / f".{name}.tmp"
        tmp.write_text(json.dumps(message))
        os.replace(tmp, queue / name)
    except OSError as e:
        raise ControlError(f"cannot write the command to {queue}: {e}") from None
    return message


def pending(state_dir: Path) -> list[dict[str, Any]]:
    """The commands queued and not yet taken, oldest first (for clients; nothing is removed)."""
    out = []
    for path in _queued(state_dir):
        message = _read(path)
        if message is not None:
            out.append(message)
    return out


def take(state_dir: Path) -> dict[str, Any] | None:
    """The oldest pending command, removed from the queue; None when there is none.

    Unreadable or unknown commands are removed and skipped.
    """
    for path in _queued(state_dir):
        taken = path.with_name(f".taken.{os.getpid()}.{path.name}")
        try:
            os.replace(path, taken)
        except FileNotFoundError:
            continue  # another reader took it
        try:
            message = _read(taken)
        finally:
            taken.unlink(missing_ok=True)
        if message is not None:
            return message
    return None


def _queued(state_dir: Path) -> list[Path]:
    paths = []
    legacy = state_dir / LEGACY
    if legacy.is_file():
        paths.append(legacy)
    try:
        paths += sorted(p for p in queue_dir(state_dir).iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        pass
    return paths


def _read(path: Path) -> dict[str, Any] | None:
    try:
        message = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(message, dict) or message.get("command") not in COMMANDS:
        return None
    return message
