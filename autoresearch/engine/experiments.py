"""The experiments of a run, folded from its events one at a time (so an append stays O(1)).

:class:`Reducer` is what :class:`~autoresearch.engine.ledger.Ledger` keeps up to date as it reads or appends;
its :class:`Experiment` records are what the policy, ``status`` and the TUI show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import events as ev_mod
from .events import (ControlTaken, Decision, Event, ExperimentInterrupted, ExperimentRepaired, ExperimentStarted,
                     IndexedEvent, NoteAdded, NoteRemoved, Remeasured, ReviewMarked, TrainingFinished)


@dataclass(slots=True)
class Training:
    """One training of an experiment's script with one seed."""

    seed: int | None
    outcome: str
    val_bpb: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    peak_memory_mb: float | None = None  # resident memory of the process tree, sampled by the runner
    wall_seconds: float | None = None
    log: str | None = None
    reason: str = ""
    ts: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and self.val_bpb is not None

    @property
    def memory_mb(self) -> float | None:
        """Peak memory of this run: the harness's device measurement, else the process tree's."""
        value = self.metrics.get("peak_memory_mb") if self.metrics else None
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
        return self.peak_memory_mb


@dataclass(slots=True)
class Experiment:
    """One experiment (the baseline or one agent change) as reduced from the ledger's events.

    The ledger returns its cached objects: treat them as read-only.
    """

    index: int
    kind: str | None = None
    commit: str | None = None
    parent: str | None = None
    description: str = ""
    status: str | None = None  # None while open; keep | discard | crash | ... | interrupted
    trainings: list[Training] = field(default_factory=list)
    val_bpb: float | None = None  # the decision's value; while open, the mean over the ok runs so far
    delta: float | None = None
    reason: str = ""
    test_bpb: float | None = None
    memory_gb: float | None = None
    training_seconds: float | None = None  # mean over the runs that report it
    num_steps: int | None = None  # mean over the runs that report it
    started: str | None = None
    finished: str | None = None
    script_sha256: str | None = None
    manifest_digest: str | None = None
    repairs: int = 0  # times the agent fixed this experiment's change after a crash
    superseded_trainings: list[Training] = field(default_factory=list)  # trainings of versions replaced by a repair
    earlier_sha256: list[str] = field(default_factory=list)  # those versions' script hashes (duplicate detection)
    verdict: str = "unreviewed"  # the user's review of a kept change: accept | reject | unreviewed
    reverts: int | None = None  # kind revert: the kept change it takes back
    reverted_by: int | None = None  # a kept change taken back: the revert experiment's index
    remeasured: int = 0  # trainings added after the decision (re-tests)

    @property
    def is_open(self) -> bool:
        return self.status is None

    @property
    def ok_values(self) -> list[float]:
        """val_bpb of every successful run (what the policy compares)."""
        return [r.val_bpb for r in self.trainings if r.ok]  # type: ignore[misc]

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.trainings]

    def _recompute(self) -> None:
        """Aggregates over the runs (one pass: it runs for every training_finished while loading)."""
        mem = None
        secs_sum, secs_n, steps_sum, steps_n, val_sum, val_n = 0.0, 0, 0.0, 0, 0.0, 0
        for r in self.trainings:
            m = r.metrics
            v = m.get("peak_memory_mb") if m else None
            if not (isinstance(v, (int, float)) and v > 0):
                v = r.peak_memory_mb
            if isinstance(v, (int, float)) and (mem is None or v > mem):
                mem = v
            if m:
                v = m.get("training_seconds")
                if isinstance(v, (int, float)):
                    secs_sum += v
                    secs_n += 1
                v = m.get("num_steps")
                if isinstance(v, (int, float)):
                    steps_sum += v
                    steps_n += 1
            if r.outcome == "ok" and r.val_bpb is not None:
                val_sum += r.val_bpb
                val_n += 1
        self.memory_gb = mem / 1024.0 if mem is not None else None
        self.training_seconds = secs_sum / secs_n if secs_n else None
        self.num_steps = round(steps_sum / steps_n) if steps_n else None
        if self.status is None:
            self.val_bpb = val_sum / val_n if val_n else None


@dataclass(slots=True)
class Note:
    id: str
    text: str
    ts: str | None = None


@dataclass(slots=True)
class Request:
    """A revert or re-test the engine took and has not carried out yet (it survives an engine restart)."""

    id: str
    command: str  # revert | retest
    index: int
    seeds: int = 0


class Reducer:
    """Folds events into experiments, one event at a time (so appends stay O(1))."""

    def __init__(self) -> None:
        self.experiments: dict[int, Experiment] = {}
        self.last_by_type: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, Note] = {}  # the steering notes in force, oldest first
        self.requests: dict[str, Request] = {}  # taken, not yet done, oldest first

    def _get(self, index: int) -> Experiment:
        exp = self.experiments.get(index)
        if exp is None:  # an event for an experiment whose start we never saw: keep it, do not drop data
            exp = self.experiments[index] = Experiment(index=index)
        return exp

    def apply(self, raw: dict[str, Any]) -> Event | None:
        """Fold one stored event in; returns it typed (None for a line that is not an event)."""
        kind = raw.get("event")
        if not isinstance(kind, str):
            return None
        self.last_by_type[kind] = raw
        ev = ev_mod.parse(raw)
        if isinstance(ev, NoteAdded):
            self.notes[ev.id] = Note(ev.id, ev.text, ev.ts)
        elif isinstance(ev, NoteRemoved):
            self.notes.pop(ev.id, None)
        elif isinstance(ev, ControlTaken) and ev.id:
            index = ev.args.get("index") if isinstance(ev.args, dict) else None
            if ev.outcome == "queued" and isinstance(index, int):
                self.requests[ev.id] = Request(ev.id, ev.command, index, int(ev.args.get("seeds") or 0))  # type: ignore[union-attr]
            elif ev.outcome != "queued":
                self.requests.pop(ev.id, None)  # one that failed when the engine tried it
        if not isinstance(ev, IndexedEvent) or not isinstance(ev.index, int) or ev.index < 0:
            return ev
        if isinstance(ev, ExperimentStarted):
            # a repeated start of the same index replaces the record (latest start wins)
            exp = self.experiments[ev.index] = Experiment(index=ev.index)
            exp.kind = ev.kind or "agent"
            exp.commit = ev.commit
            exp.parent = ev.parent
            exp.description = ev.description or ""
            exp.script_sha256 = ev.script_sha256
            exp.manifest_digest = ev.manifest_digest
            exp.started = ev.ts
            exp.reverts = ev.reverts if isinstance(ev.reverts, int) else None
            if exp.kind == "revert":
                self._done("revert", exp.reverts, ev.extra.get("request"))
        elif isinstance(ev, TrainingFinished):
            exp = self._get(ev.index)
            exp.trainings.append(Training(
                seed=ev.seed,
                outcome=ev.outcome or "crash",
                val_bpb=float(ev.val_bpb) if isinstance(ev.val_bpb, (int, float)) else None,
                metrics=ev.metrics if isinstance(ev.metrics, dict) else {},
                peak_memory_mb=ev.peak_memory_mb,
                wall_seconds=ev.wall_seconds,
                log=ev.log,
                reason=ev.reason or "",
                ts=ev.ts,
            ))
            exp._recompute()
        elif isinstance(ev, Decision):
            exp = self._get(ev.index)
            exp.status = ev.status
            if "val_bpb" in raw:
                exp.val_bpb = float(ev.val_bpb) if isinstance(ev.val_bpb, (int, float)) else None
            else:
                values = exp.ok_values
                exp.val_bpb = sum(values) / len(values) if values else None
            exp.delta = float(ev.delta) if isinstance(ev.delta, (int, float)) else None
            exp.reason = ev.reason or ""
            exp.test_bpb = float(ev.test_bpb) if isinstance(ev.test_bpb, (int, float)) else None
            exp.finished = ev.ts
            if exp.kind == "revert" and ev.status == "keep" and exp.reverts in self.experiments:
                self.experiments[exp.reverts].reverted_by = exp.index
        elif isinstance(ev, Remeasured):
            exp = self._get(ev.index)
            exp.val_bpb = float(ev.val_bpb) if isinstance(ev.val_bpb, (int, float)) else exp.val_bpb
            exp.remeasured += ev.seeds
            self._done("retest", ev.index, ev.request)
        elif isinstance(ev, ReviewMarked):
            self._get(ev.index).verdict = ev.verdict
        elif isinstance(ev, ExperimentRepaired):
            exp = self._get(ev.index)
            exp.commit = ev.commit or exp.commit
            exp.description = ev.description or exp.description
            if exp.script_sha256:
                exp.earlier_sha256.append(exp.script_sha256)
            exp.script_sha256 = ev.script_sha256 or exp.script_sha256
            exp.repairs += 1
            exp.superseded_trainings.extend(exp.trainings)  # the crashed version's: kept, not this version's figures
            exp.trainings = []
            exp._recompute()
        elif isinstance(ev, ExperimentInterrupted):
            exp = self._get(ev.index)
            exp.status = "interrupted"
            exp.reason = ev.reason or ""
            exp.finished = ev.ts
        return ev

    def _done(self, command: str, index: int | None, request: Any) -> None:
        """A request carried out: by its id, else the oldest of its kind for that experiment."""
        if isinstance(request, str) and request in self.requests:
            del self.requests[request]
            return
        for rid, req in self.requests.items():
            if req.command == command and req.index == index:
                del self.requests[rid]
                return
