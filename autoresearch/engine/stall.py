"""The stall watchdog: an engine alive but stuck is a fact in the ledger.

Progress is an experiment or a training finishing, a session starting, a pause ending, or a line of training
output. When none comes for longer than the run's trainings allow (:func:`default_stall_seconds`, or
``[notify] stall_minutes``), a :class:`~autoresearch.engine.events.Stalled` event says so, once per episode,
with what the engine was doing: the app and ``status`` show it, ``[notify]`` sends it. Time paused or waiting
for disk is not a stall. The check runs on a thread of its own, so a main thread blocked for good (a hung git,
a reply that never comes) is still reported.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

from .events import PURPOSE_WORDS, Stalled

IDLE_PHASES = ("paused", "waiting_for_disk", "stopped")  # no stall is counted while the engine is in one
_PROGRESS = ("run_started", "training_finished", "remeasured", "experiment_interrupted", "decision", "resumed")


def default_stall_seconds(time_budget: float | None) -> float:
    """A stall limit for a run whose trainings last ``time_budget`` seconds: room for a confirming seed,
    start-up, evaluation and a slow local model's proposal. 30 minutes at least."""
    budget = float(time_budget or 0)
    return max(30 * 60.0, 4 * budget + 10 * 60.0)


def is_stalled(now: float, last_progress: float, limit_seconds: float | None) -> bool:
    """Whether more than ``limit_seconds`` passed since the last progress (None: stalls are not watched)."""
    return limit_seconds is not None and limit_seconds > 0 and now - last_progress >= limit_seconds


def doing_words(phase: str, index: int | None, detail: str, description: str = "") -> str:
    """'training exp 7 (a wider MLP): baseline' — what the engine was doing, for a person."""
    doing = phase.replace("_", " ") or "starting"
    if index is not None:
        doing += f" exp {index}"
        if description:
            doing += f" ({description if len(description) <= 120 else description[:119].rstrip() + '…'})"
    if detail:
        doing += f": {detail}"
    return doing


def stall_words(seconds: float, doing: str, tag: str, pid: int | None) -> str:
    """The stall line a person acts on (status, the app's banner)."""
    minutes = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
    kill = f"; if it does not, kill {pid}" if pid else ""
    return (f"no progress for {minutes}: the engine is {doing}. If it stays so, stop it (autoresearch stop {tag} "
            f"--now{kill}) and start it again: the run resumes where it was")


class StallWatch:
    """Tracks progress (a ledger observer, plus :meth:`output` for training lines) and says when a stall is due.

    The pure part (:meth:`observe`, :meth:`output`, :meth:`due`) takes the time as an argument; :meth:`start`
    checks on a daemon thread and appends the event with the function it is given."""

    def __init__(self, limit_seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_seconds = limit_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self.last_progress = clock()
        self._told = False
        self._phase: tuple[str, int | None, str] = ("starting", None, "")
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def _progress(self, now: float) -> None:
        self.last_progress = now
        self._told = False

    def observe(self, event: Mapping[str, Any], now: float | None = None) -> None:
        """One ledger event (a dict as the ledger stores it)."""
        now = self.clock() if now is None else now
        kind = event.get("event")
        with self._lock:
            if kind in _PROGRESS:
                self._progress(now)
            if kind == "phase":
                before = self._phase[0]
                index = event.get("index")
                self._phase = (str(event.get("phase") or ""), index if isinstance(index, int) else None,
                               str(event.get("detail") or ""))
                if before in IDLE_PHASES and self._phase[0] not in IDLE_PHASES:
                    self._progress(now)  # the time paused or waiting for disk is not a stall
            elif kind == "training_started":
                index = event.get("index")
                purpose = str(event.get("purpose") or "")
                self._phase = ("training", index if isinstance(index, int) else None, PURPOSE_WORDS.get(purpose, purpose))
            elif kind == "stopped":
                self._phase = ("stopped", None, "")

    def output(self, now: float | None = None) -> None:
        """A line of training output: the training is alive."""
        with self._lock:
            self._progress(self.clock() if now is None else now)

    def due(self, now: float | None = None) -> Stalled | None:
        """The stall to record now, once per episode (None when none is due)."""
        now = self.clock() if now is None else now
        with self._lock:
            if self._told or self._phase[0] in IDLE_PHASES:
                return None
            if not is_stalled(now, self.last_progress, self.limit_seconds):
                return None
            self._told = True
            phase, index, detail = self._phase
            return Stalled(seconds=round(now - self.last_progress, 1), phase=phase, index=index, detail=detail[:300],
                           limit_seconds=float(self.limit_seconds or 0))

    def start(self, record: Callable[[Stalled], Any], interval: float = 30.0) -> None:
        """Check every ``interval`` seconds on a daemon thread; ``record`` (the ledger's append) never raises out."""
        if self._thread is not None or not self.limit_seconds:
            return
        self._done.clear()

        def loop() -> None:
            while not self._done.wait(interval):
                stall = self.due()
                if stall is not None:
                    try:
                        record(stall)
                    except Exception:  # a full disk, a ledger gone: the watchdog must not take the engine down
                        pass

        self._thread = threading.Thread(target=loop, name="autoresearch-stall", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
