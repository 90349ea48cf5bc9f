"""Steering a running engine through its run directory, from any client (TUI, another shell, a script).

A client writes one command to ``.autoresearch/control`` (atomically: temp file + rename). The engine
takes it by renaming the file away, so a command is acted on once; a newer command simply replaces an
unread older one. Commands: pause, resume, stop (after the current experiment), stop-now, skip (abandon
the current experiment and go on).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

COMMANDS = ("pause", "resume", "stop", "stop-now", "skip")


class ControlError(ValueError):
    pass


def control_path(state_dir: Path) -> Path:
    return state_dir / "control"


def send(state_dir: Path, command: str, **extra: Any) -> dict[str, Any]:
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    message = {"command": command, "id": uuid.uuid4().hex[:12], "ts": time.time(), **extra}
    path = control_path(state_dir)
    tmp = path.with_name(f".control.{message['id']}.tmp")
    tmp.write_text(json.dumps(message))
    os.replace(tmp, path)
    return message


def take(state_dir: Path) -> dict[str, Any] | None:
    """The pending command, removed from the queue; None when there is none (or it is unreadable)."""
    path = control_path(state_dir)
    taken = path.with_name(f".control.taken.{os.getpid()}")
    try:
        os.replace(path, taken)
    except FileNotFoundError:
        return None
    try:
        message = json.loads(taken.read_text())
    except (OSError, ValueError):
        message = None
    finally:
        taken.unlink(missing_ok=True)
    if not isinstance(message, dict) or message.get("command") not in COMMANDS:
        return None
    return message
