"""What the engine is doing this second, for clients: ``.autoresearch/live.json`` and ``engine.log``.

``live.json`` holds facts too frequent for the fsynced ledger: the agent's reply heartbeat (characters and
seconds while a model writes) and the current training's progress (step, percent, loss, tokens/s, seconds
left), rewritten atomically at most once a second and never fsynced (losing it loses nothing recorded).

``engine.log`` receives every line the engine says (what headless mode prints), with its timestamp, so a
client that attaches later (over SSH, after a reboot) sees the whole story.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

LIVE_FILE = "live.json"
ENGINE_LOG = "engine.log"

# the harness's progress line: "step 00012 |  45.2% | loss 3.2104 | 12,345 tok/s | remaining 17s"
_PROGRESS = re.compile(r"^step (\d+) \|\s*([\d.]+)% \| loss (\S+) \| ([\d,.]+) tok/s \| remaining (\d+)s")


def parse_progress(line: str) -> dict[str, Any] | None:
    """The figures of one harness progress line, or None when the line is something else."""
    m = _PROGRESS.match(line)
    if not m:
        return None
    try:
        loss: float | None = float(m.group(3))
    except ValueError:
        loss = None
    return {"step": int(m.group(1)), "progress": float(m.group(2)) / 100.0, "loss": loss,
            "tokens_per_second": float(m.group(4).replace(",", "")), "remaining": float(m.group(5))}


class LiveState:
    """The writer of ``live.json`` (the engine's side). Sections: ``agent``, ``training``."""

    def __init__(self, state_dir: Path, min_interval: float = 1.0) -> None:
        self.path = state_dir / LIVE_FILE
        self.min_interval = min_interval
        self._data: dict[str, Any] = {"pid": os.getpid()}
        self._written = 0.0
        self._lock = threading.Lock()  # the loop and the training's output reader both write

    def get(self, section: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._data.get(section)
            return dict(value) if isinstance(value, dict) else None

    def set(self, section: str, value: dict[str, Any] | None, *, force: bool = False) -> None:
        with self._lock:
            if value is None:
                self._data.pop(section, None)
            else:
                self._data[section] = value
            now = time.monotonic()
            if force or now - self._written >= self.min_interval:
                self._write()
                self._written = now

    def update(self, section: str, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into a section that exists (a training's progress); nothing when it does not."""
        with self._lock:
            current = self._data.get(section)
            if not isinstance(current, dict):
                return
            self._data[section] = {**current, **changes}
            now = time.monotonic()
            if now - self._written >= self.min_interval:
                self._write()
                self._written = now

    def _write(self) -> None:
        self._data["updated"] = time.time()
        tmp = self.path.with_name(f".{LIVE_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self._data))
            os.replace(tmp, self.path)
        except OSError:  # a full disk must not stop the engine over a progress figure
            tmp.unlink(missing_ok=True)


def read_live(state_dir: Path) -> dict[str, Any]:
    """The latest ``live.json`` ({} when there is none or it is unreadable)."""
    try:
        data = json.loads((state_dir / LIVE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stamp(line: str) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"


class EngineLog:
    """Appends each line the engine says, timestamped, to ``engine.log``.

    When the process's stdout already is ``engine.log`` (an engine launched detached, whose printed lines
    land there), nothing is written, so no line appears twice.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / ENGINE_LOG
        self._file = None
        if not _stdout_is(self.path):
            try:
                self._file = open(self.path, "a", encoding="utf-8", buffering=1)
            except OSError:
                self._file = None  # a read-only or full disk: the lines still reach stdout

    def __call__(self, line: str) -> None:
        if self._file is not None:
            try:
                self._file.write(stamp(line) + "\n")
            except OSError:
                pass

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _stdout_is(path: Path) -> bool:
    try:
        out = os.fstat(sys.stdout.fileno())
        target = os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (out.st_dev, out.st_ino) == (target.st_dev, target.st_ino)
