"""Starting the headless engine as a process of its own, detached from the terminal that asked for it.

The app never runs the loop in its own process: it launches ``autoresearch run --headless`` in a new
session (so closing the terminal or dropping SSH does not signal it), with its output going to the run's
``engine.log``, waits until the engine holds the run's lock and is past its start (``run_started``, then its
first phase), and then reads the run directory like any other client. A failure to start is reported with the engine's own message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .ledger import Ledger
from .live import ENGINE_LOG
from .rundir import RunDir, RunError, RunLock


class LaunchError(RunError):
    """The engine did not start; the message carries what it said."""


def engine_command(run: RunDir, extra: list[str] | None = None) -> list[str]:
    """The command line of a headless engine resuming ``run`` (the same Python, this package)."""
    return [sys.executable, "-m", "autoresearch", "run", "--headless", "--tag", run.tag,
            "--runs-dir", str(run.path.parent), *(extra or [])]


def launch_detached(run: RunDir, extra: list[str] | None = None, *, timeout: float = 120.0,
                    env: dict[str, str] | None = None) -> int:
    """Start an engine on ``run`` in its own session; return its pid once it runs (raises LaunchError)."""
    lock = RunLock(run)
    if lock.is_held():
        holder = lock.holder()
        raise LaunchError(f"an engine (pid {holder.get('pid')}) is already running {run.tag}: watch it with "
                          f"`autoresearch watch {run.tag}`")
    log_path = run.state / ENGINE_LOG
    ledger = Ledger(run.path, writable=False)
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} launching: {' '.join(engine_command(run, extra)[1:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            engine_command(run, extra), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(run.path.parent), env=env if env is not None else dict(os.environ),
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    progress = _Startup(proc.pid)
    while time.monotonic() < deadline:
        code = proc.poll()
        progress.read(ledger)
        if progress.stopped is not None or code is not None:
            said = _said_since(log_path, offset) or progress.stopped or ""
            how = f"exit status {code}" if code is not None else "it stopped"
            raise LaunchError(f"the engine for {run.tag} stopped at once ({how})"
                              + (f":\n{said}" if said else f"; see {log_path}"))
        if progress.running and lock.is_held():
            return proc.pid
        time.sleep(0.1)
    said = _said_since(log_path, offset)
    raise LaunchError(f"the engine for {run.tag} (pid {proc.pid}) did not start within {timeout:.0f}s; it may still be "
                      f"starting: `autoresearch watch {run.tag}`." + (f" It said:\n{said}" if said else ""))


class _Startup:
    """Follows the new engine's first events: started (run_started with its pid), then past its recovery (its
    first phase after "starting", or a training), or stopped (with the reason)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = False
        self.running = False
        self.stopped: str | None = None

    def read(self, ledger: Ledger) -> None:
        for ev in ledger.tail_new_events():
            kind = ev.get("event")
            if kind == "run_started":
                self.started = ev.get("pid") == self.pid
            elif not self.started:
                continue
            elif kind == "stopped":
                self.stopped = str(ev.get("reason") or "stopped")
            elif kind in ("training_started", "experiment_started") or (kind == "phase" and ev.get("phase") != "starting"):
                self.running = True


def _said_since(path: Path, offset: int, limit: int = 4000) -> str:
    """What the engine wrote to its log after ``offset`` (its error message), without the launch line."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip() and " launching: " not in ln]
    return "\n".join(lines)[-limit:]
