"""The thread that watches a run directory for the app: it polls the engine's read model and posts messages.

It never touches a widget: everything it learns goes into a :class:`RunUpdated` message of immutable
snapshots (rows, a deep copy of the run state, the machine's load), at most a few times a second.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Callable

from textual.message import Message

from ..engine.rundir import RunDir
from ..engine.sysload import Load, LoadSampler
from ..engine.view import ExperimentRow, RunState, RunView, quick_rows, row_of


class RunUpdated(Message):
    """What the poller learned: changed rows (all of them when ``reset``), the state now, the machine's load."""

    def __init__(self, state: RunState, rows: list[ExperimentRow], reset: bool, load: Load | None, now: float,
                 remaining: float | None, provisional: bool = False) -> None:
        super().__init__()
        self.provisional = provisional  # rows from results.tsv, shown while the ledger is read (no state yet)
        self.state = state
        self.rows = rows
        self.reset = reset
        self.load = load
        self.now = now
        self.remaining = remaining


def poll_run(run: RunDir, post: Callable[[Message], object], cancelled: Callable[[], bool], *,
             interval: float = 0.25, heartbeat: float = 1.0, clock: Callable[[], float] = time.time,
             sampler: LoadSampler | None = None, wake: threading.Event | None = None) -> None:
    """Loop until ``cancelled()``: poll ``run`` and ``post`` a RunUpdated when something changed (and once a
    second anyway, for clocks and the load)."""
    view = RunView(run, clock=clock)
    quick = quick_rows(run)  # a long run's table at once; the ledger's full reading follows
    if quick:
        post(RunUpdated(RunState(tag=run.tag, path=run.path, phase="reading"), quick, True, None, clock(), None,
                        provisional=True))
    first = True
    last_post = 0.0
    load: Load | None = None
    load_at = 0.0
    posted: dict[int, ExperimentRow] = {}  # the rows as last posted: only differences are sent again
    alive_before: bool | None = None
    while not cancelled():
        update = view.poll()
        state = update.state
        if state.error:  # unreadable: say so, and keep trying (the file may be mended)
            post(RunUpdated(copy.deepcopy(state), [], False, load, clock(), None))
            first = True
        elif first or update.reset:
            rows = [row_of(e, state) for e in view.experiments()]
            posted = {r.index: r for r in rows}
        else:
            indices = set(update.changed)
            if state.open_index is not None:
                indices.add(state.open_index)  # its status word follows the engine (running, confirming)
            if alive_before is not None and alive_before != state.engine.alive:
                indices |= {e.index for e in view.experiments() if e.status is None}  # running -> interrupted?
            rows = []
            for i in sorted(indices):
                exp = view.experiment(i)
                if exp is not None and (row := row_of(exp, state)) != posted.get(i):
                    rows.append(row)
                    posted[i] = row
        if state.error:
            time.sleep(max(interval, 1.0))
            continue
        alive_before = state.engine.alive
        now = time.monotonic()
        if sampler is not None and now - load_at >= 2.0:
            load, load_at = sampler.sample(), now
        if first or update.reset or update.events or rows or now - last_post >= heartbeat:
            post(RunUpdated(copy.deepcopy(state), rows, first or update.reset, load, clock(), view.remaining_seconds()))
            last_post = now
        first = False
        if wake is not None:
            wake.wait(interval)
            wake.clear()
        else:
            time.sleep(interval)
