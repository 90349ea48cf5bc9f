"""One read model of a run directory for every client (``autoresearch status``, the TUI, scripts).

:class:`RunView` opens the ledger read-only and is polled: each :meth:`RunView.poll` reads only what was
appended since the last one (by file offset), folds the new events into the experiments (the ledger's
reducer) and into a typed :class:`RunState` (phase, current training, best, baseline, noise, counts, agent,
engine alive or dead), and says which experiments changed. It never writes to the run directory, so any
number of clients can watch one engine, in any process, on the same machine.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .events import (AgentErrorEvent, ControlTaken, Decision, Event, ExperimentInterrupted, ExperimentRepaired,
                     ExperimentStarted, NoiseEstimated, NoteAdded, NoteRemoved, Paused, Phase, ProposalRejected, Remeasured,
                     Resumed, RunStarted, Stalled, Stopped, TrainingFinished, TrainingStarted)
from .experiments import Experiment
from .ledger import RESULTS_FILE, Ledger, LedgerError
from .live import ENGINE_LOG, read_live
from .results import read_results_tsv
from .rundir import RunDir, RunError, RunLock
from .stall import doing_words

# what ends a stall the watchdog recorded (engine.stall's progress; training output shows up as the next of these)
_PROGRESS = (RunStarted, TrainingFinished, Remeasured, ExperimentInterrupted, Decision, Resumed, Stopped)


def parse_ts(ts: str | None) -> float | None:
    """Seconds since the epoch of a ledger timestamp (``2026-03-08T23:14:05.123Z``), None if unreadable."""
    if not ts:
        return None
    try:
        t = datetime.fromisoformat(ts)  # Python 3.11 reads the Z suffix
    except (ValueError, TypeError):
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class EngineState:
    alive: bool = False  # an engine holds the run's lock now
    pid: int | None = None
    host: str | None = None
    started: float | None = None  # the latest run_started
    stopped: float | None = None  # when it said it stopped (None after a kill -9: see last_seen)
    stop_reason: str = ""
    last_seen: float | None = None  # the newest event of the run
    last_message: str = ""  # the last line of engine.log

    @property
    def stopped_cleanly(self) -> bool:
        """It said it stopped, for a reason that is not an error (a limit, the user, the end of a demo)."""
        return not self.alive and self.stopped is not None and not self.stop_reason.startswith("error:")

    @property
    def dead_since(self) -> float | None:
        """When a stopped or vanished engine was last heard of (None while it runs)."""
        if self.alive:
            return None
        return self.stopped or self.last_seen


@dataclass
class AgentState:
    spec: str | None = None
    unusable_replies: int = 0
    state: str | None = None  # None | "unavailable" (waiting for the model) | "retrying" (last reply unusable)
    message: str = ""
    since: str | None = None  # ts of the first error of the current unbroken run of errors
    reply: dict[str, Any] | None = None  # live: {state: reading|writing, chars, seconds, since}
    rejected: int = 0  # proposals that failed the checks (fixed or not)
    last_rejection: str = ""


@dataclass
class CurrentTraining:
    index: int
    attempt: int
    seed: int | None
    purpose: str  # baseline | experiment | confirm | repair
    log: Path  # absolute path of its log
    started: float | None
    budget_seconds: float | None
    progress: dict[str, Any] = field(default_factory=dict)  # live: step, progress (0-1), loss, tokens_per_second, remaining


@dataclass
class RunState:
    tag: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    engine: EngineState = field(default_factory=EngineState)
    phase: str = "starting"
    phase_index: int | None = None
    phase_detail: str = ""
    phase_since: float | None = None
    paused: bool = False
    pause_reason: str = ""
    current: CurrentTraining | None = None
    open_index: int | None = None  # the experiment started and not yet decided
    best: Experiment | None = None
    baseline: Experiment | None = None
    noise_sigma: float | None = None
    noise_dof: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    experiments: int = 0
    agent: AgentState = field(default_factory=AgentState)
    taken: dict[str, str] = field(default_factory=dict)  # control id -> what the engine did with it
    notes: dict[str, str] = field(default_factory=dict)  # the steering notes in force: id -> text, oldest first
    session_started: float | None = None
    session_decided: int = 0  # experiments decided since the latest run_started
    last_event: str = ""  # type of the newest event
    stalled_since: float | None = None  # the last progress before a stall the engine's watchdog recorded (None: none)
    stall_doing: str = ""  # what the engine was doing then
    error: str | None = None  # the run cannot be read (corrupt ledger, directory gone): say so, show nothing else

    @property
    def status(self) -> str:
        """running | paused | stopped (status's one word)."""
        if not self.engine.alive:
            return "stopped"
        return "paused" if self.paused else "running"

    @property
    def gain(self) -> float | None:
        """The best's val_bpb minus the baseline's (negative = better)."""
        if self.best is None or self.baseline is None or self.best.val_bpb is None or self.baseline.val_bpb is None:
            return None
        return self.best.val_bpb - self.baseline.val_bpb

    def experiments_per_hour(self, now: float) -> float | None:
        """Experiments decided per hour in the engine's current (or last) session."""
        if self.session_started is None or self.session_decided == 0:
            return None
        end = now if self.engine.alive else (self.engine.dead_since or now)
        hours = (end - self.session_started) / 3600
        return self.session_decided / hours if hours > 0 else None

    @property
    def budget(self) -> float | None:
        value = (self.config.get("profile") or {}).get("time_budget")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass
class ViewUpdate:
    events: list[Event]  # new since the last poll (all of them on the first poll or after a reset)
    changed: set[int]  # experiment indices whose record changed
    state: RunState
    reset: bool = False  # the ledger was rewritten or replaced: start over from ``experiments()``


# the frequent events whose time the state does not need (a load folds ~40k events: no timestamp parsing for these)
_UNTIMED = (TrainingFinished, ExperimentStarted, NoiseEstimated, ExperimentRepaired)


class RunView:
    """A polled, read-only view of one run directory."""

    def __init__(self, run: RunDir | Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.run = run if isinstance(run, RunDir) else RunDir(Path(run))
        self.clock = clock
        self.ledger = Ledger(self.run.path, writable=False)
        self._lock = RunLock(self.run)
        self._config: dict[str, Any] | None = None
        self.state = RunState(tag=self.run.tag, path=self.run.path)
        self._polled = False

    # -- reading --------------------------------------------------------------------------------------
    def experiments(self) -> list[Experiment]:
        return self.ledger.experiments()

    def experiment(self, index: int) -> Experiment | None:
        return self.ledger.experiment(index)

    def poll(self) -> ViewUpdate:
        """Read what is new; fold it in. Never raises for a damaged or vanished run: ``state.error`` says it."""
        if not self.run.path.is_dir():
            self.state.error = f"the run directory {self.run.path} is gone (moved or deleted)"
            self.state.engine.alive = False
            return ViewUpdate([], set(), self.state)
        try:
            if self._config is None:
                self._config = self.run.config()
                self.state.config = self._config
                self.state.agent.spec = self._config.get("agent")
            generation = self.ledger.generation
            events = self.ledger.tail_new_typed()
        except (LedgerError, RunError, OSError) as e:
            self.state.error = str(e)
            self.state.engine.alive = self._alive()
            return ViewUpdate([], set(), self.state)
        self.state.error = None
        reset = self._polled and self.ledger.generation != generation
        if reset:
            self.state = RunState(tag=self.run.tag, path=self.run.path, config=self._config or {})
            self.state.agent.spec = (self._config or {}).get("agent")
        self._polled = True
        changed: set[int] = set()
        for ev in events:
            self._fold(ev, changed)
        if events:
            self.state.engine.last_seen = parse_ts(events[-1].ts) or self.state.engine.last_seen
        self._derive(events)
        return ViewUpdate(events, changed, self.state, reset=reset)

    # -- folding --------------------------------------------------------------------------------------
    def _fold(self, ev: Event, changed: set[int]) -> None:
        st = self.state
        st.last_event = ev.TYPE or getattr(ev, "type", "")
        index = getattr(ev, "index", None)
        if isinstance(index, int) and index >= 0:
            changed.add(index)
        ts = None if isinstance(ev, _UNTIMED) else parse_ts(ev.ts)
        if isinstance(ev, _PROGRESS):
            st.stalled_since, st.stall_doing = None, ""
        if isinstance(ev, Stalled):
            st.stalled_since = (ts - ev.seconds) if ts is not None else None
            exp = self.ledger.experiment(ev.index) if ev.index is not None else None
            st.stall_doing = doing_words(ev.phase, ev.index, ev.detail, exp.description if exp is not None else "")
        elif isinstance(ev, RunStarted):
            st.engine.pid, st.engine.host, st.engine.started = ev.pid, ev.host, ts
            st.engine.stopped, st.engine.stop_reason = None, ""
            st.session_started, st.session_decided = ts, 0
            st.current, st.paused, st.pause_reason = None, False, ""
            self._set_phase("starting", None, "", ts)
            self._agent_clear()
        elif isinstance(ev, Phase):
            self._set_phase(ev.phase, ev.index, ev.detail, ts)
        elif isinstance(ev, ExperimentStarted):
            st.open_index = ev.index
            self._agent_clear()
        elif isinstance(ev, ExperimentRepaired):
            self._agent_clear()
        elif isinstance(ev, TrainingStarted):
            st.current = CurrentTraining(index=ev.index, attempt=ev.attempt, seed=ev.seed, purpose=ev.purpose,
                                         log=self.run.state / ev.log, started=ts, budget_seconds=ev.budget_seconds)
            self._set_phase("training", ev.index, ev.purpose, ts)
        elif isinstance(ev, TrainingFinished):
            if st.current is not None and st.current.index == ev.index:
                st.current = None
        elif isinstance(ev, (Decision, ExperimentInterrupted)):
            if st.open_index == ev.index:
                st.open_index = None
            if st.current is not None and st.current.index == ev.index:
                st.current = None
            if st.session_started is not None and ts is not None and ts >= st.session_started:
                st.session_decided += 1
        elif isinstance(ev, NoiseEstimated):
            st.noise_sigma, st.noise_dof = ev.sigma, ev.dof or 0
        elif isinstance(ev, Paused):
            st.paused, st.pause_reason = True, ev.reason
        elif isinstance(ev, Resumed):
            st.paused, st.pause_reason = False, ""
        elif isinstance(ev, Stopped):
            st.engine.stopped, st.engine.stop_reason = ts, ev.reason
            st.current = None
            self._set_phase("stopped", None, ev.reason, ts)
        elif isinstance(ev, ControlTaken):
            if ev.id:
                st.taken[ev.id] = ev.outcome or "done"
        elif isinstance(ev, NoteAdded):
            st.notes[ev.id] = ev.text
        elif isinstance(ev, NoteRemoved):
            st.notes.pop(ev.id, None)
        elif isinstance(ev, AgentErrorEvent):
            agent = st.agent
            if not ev.unavailable:
                agent.unusable_replies += 1
            if agent.state is not None and (agent.state == "unavailable") != bool(ev.unavailable):
                agent.since = None  # a different kind of trouble begins
            agent.state = "unavailable" if ev.unavailable else "retrying"
            agent.message = ev.message
            agent.since = agent.since or ev.ts
        elif isinstance(ev, ProposalRejected):
            st.agent.rejected += 1
            st.agent.last_rejection = ev.reason

    def _set_phase(self, phase: str, index: int | None, detail: str, ts: float | None) -> None:
        st = self.state
        st.phase, st.phase_index, st.phase_detail, st.phase_since = phase, index, detail, ts

    def _agent_clear(self) -> None:
        agent = self.state.agent
        agent.state, agent.message, agent.since = None, "", None

    def _derive(self, events: list[Event]) -> None:
        """What depends on more than one event or on the world now: best, counts, alive, live figures."""
        st = self.state
        was_alive = st.engine.alive
        st.engine.alive = self._alive()
        exps = self.ledger.experiments()
        if events or st.best is None or was_alive != st.engine.alive:
            st.best = self.ledger.best()
            st.baseline = next((e for e in exps if e.kind == "baseline" and e.status == "keep"), None)
            counts: dict[str, int] = {}
            for e in exps:
                key = experiment_status(e, st)
                counts[key] = counts.get(key, 0) + 1
            st.counts = counts
            st.experiments = len(exps)
        if not st.engine.alive:
            st.current = None
            st.agent.reply = None
            if st.phase != "stopped":
                st.phase = "stopped"
        else:
            live = read_live(self.run.state)
            reply = live.get("agent")
            st.agent.reply = reply if isinstance(reply, dict) else None
            training = live.get("training")
            if st.current is not None and isinstance(training, dict) and training.get("index") == st.current.index \
                    and training.get("attempt") == st.current.attempt:
                st.current.progress = {k: training[k] for k in ("step", "progress", "loss", "tokens_per_second", "remaining")
                                       if k in training}
        st.engine.last_message = last_line(self.run.state / ENGINE_LOG)

    def _alive(self) -> bool:
        try:
            return self._lock.is_held()
        except OSError:
            return False

    # -- for clients ----------------------------------------------------------------------------------
    def remaining_seconds(self) -> float | None:
        """Seconds of training left in the current training (the harness's figure, else the budget's)."""
        cur = self.state.current
        if cur is None:
            return None
        if isinstance(cur.progress.get("remaining"), (int, float)):
            return float(cur.progress["remaining"])
        if cur.budget_seconds and cur.started:
            return max(0.0, cur.budget_seconds - (self.clock() - cur.started))
        return None


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    """An immutable snapshot of one experiment, as tables show it (safe to hand from a poller thread to a UI)."""

    index: int
    kind: str  # baseline | agent
    status: str  # keep | discard | crash | oom | nan | timeout | invalid | interrupted | confirming | running | interrupted?
    commit: str  # full sha ('' when unknown)
    parent: str | None
    val_bpb: float | None
    delta: float | None  # vs the best it was compared with (negative = better)
    description: str
    training_seconds: float | None
    memory_gb: float | None
    seeds: int
    test_bpb: float | None
    reason: str
    started: str | None
    finished: str | None


def row_of(exp: Experiment, state: RunState) -> ExperimentRow:
    return ExperimentRow(
        index=exp.index, kind=exp.kind or "agent", status=experiment_status(exp, state), commit=exp.commit or "",
        parent=exp.parent, val_bpb=exp.val_bpb, delta=exp.delta, description=exp.description,
        training_seconds=exp.training_seconds, memory_gb=exp.memory_gb, seeds=len(exp.trainings),
        test_bpb=exp.test_bpb, reason=exp.reason, started=exp.started, finished=exp.finished,
    )


def quick_rows(run: RunDir) -> list[ExperimentRow]:
    """The decided experiments from results.tsv (rewritten by the engine after each decision): a table to show
    at once while the ledger itself is read. Short commits, no parents, nothing open; [] without the file."""
    try:
        results = read_results_tsv(run.state / RESULTS_FILE)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return [ExperimentRow(index=r.index, kind="baseline" if r.index == 0 else "agent", status=r.status, commit=r.commit,
                          parent=None, val_bpb=r.val_bpb, delta=r.delta, description=r.description,
                          training_seconds=r.training_seconds, memory_gb=r.memory_gb, seeds=r.seeds or 0,
                          test_bpb=r.test_bpb, reason="", started=None, finished=None) for r in results]


def experiment_status(exp: Experiment, state: RunState) -> str:
    """The word a table shows: the decision, else confirming (a second seed of an open one) or running."""
    if exp.status:
        return exp.status
    if state.current is not None and state.current.index == exp.index and state.current.purpose == "confirm":
        return "confirming"
    if not state.engine.alive:
        return "interrupted?"  # open, and no engine: it will be marked interrupted when the run resumes
    return "running"


def last_line(path: Path, limit: int = 4096) -> str:
    """The last non-empty line of a text file ('' when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def format_age(seconds: float | None) -> str:
    """'12s', '5m', '3h 20m', '2d 4h' (for "last activity")."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
