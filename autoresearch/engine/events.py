"""The ledger's event contract, in code: one dataclass per event type.

The loop writes these (``Ledger.append(event)``); the reducer and every client (``status``, the TUI) read
them back with :func:`parse`. On disk an event is one JSON object with an ``"event"`` field naming its
type and an ISO 8601 ``"ts"``. Fields a newer version adds are kept in ``extra`` by an older reader, and an
event type it does not know becomes :class:`UnknownEvent`: a ledger is never refused for being newer.

Experiment lifecycle (``index`` 0 is the baseline)::

    experiment_started -> training_started -> training_finished [-> training_started ...]
        [-> experiment_repaired -> training_started ...] -> decision | experiment_interrupted

Facts about the engine itself: run_started, phase, control (a client's command, taken), paused, resumed,
stopped, noise_estimate, agent_error, proposal_rejected, remeasured (more seeds of a decided experiment).

Written by clients (the review screen, ``autoresearch note``/``review``): review (accept / reject a kept
change), note_added / note_removed (steering notes for the researcher). A revert is an experiment of kind
``revert`` (its ``reverts`` names the kept change it takes back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..training.runner import OUTCOMES  # of one training

DECISION_STATUSES = ("keep", "discard", "crash", "oom", "nan", "timeout", "invalid")
FAILURE_STATUSES = ("crash", "oom", "nan", "timeout", "invalid", "interrupted")
KINDS = ("baseline", "agent", "revert")  # revert: the user took a kept change back (engine.review)
TRAINING_PURPOSES = ("baseline", "experiment", "confirm", "repair", "retest")
# each purpose as a person reads it beside a training ('' for a plain experiment): the app's status line, a stall
PURPOSE_WORDS = {"baseline": "baseline", "experiment": "", "confirm": "confirming with another seed",
                 "repair": "the agent's fix", "retest": "re-test, more seeds"}
VERDICTS = ("accept", "reject", "unreviewed")  # the user's review of a kept change
# what the engine is doing; "training" and "evaluating" carry the experiment's index
PHASES = ("starting", "proposing", "repairing", "waiting_for_agent", "training", "evaluating", "paused",
          "waiting_for_disk", "stopped", "reverting", "retesting", "waiting_for_quiet")


class EventError(ValueError):
    """An event that breaks the contract (the writer's bug; a reader skips nothing because of it)."""


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of every event. ``ts`` is set by the ledger when the event is appended."""

    TYPE: ClassVar[str] = ""
    ts: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know (kept on rewrite)

    def validate(self) -> None:
        """Raise :class:`EventError` when the event breaks the contract."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.TYPE}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "ts"):
                continue
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue  # optional and absent: not written
            out[f.name] = value
        out.update(self.extra)
        if self.ts:
            out["ts"] = self.ts
        return out


def _index(ev: Any) -> None:
    if not isinstance(ev.index, int) or isinstance(ev.index, bool) or ev.index < 0:
        raise EventError(f"{ev.TYPE} event needs a non-negative integer 'index', got {ev.index!r}")


@dataclass(slots=True, kw_only=True)
class IndexedEvent(Event):
    """An event about one experiment."""

    index: int

    def validate(self) -> None:
        _index(self)


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    TYPE: ClassVar[str] = "run_started"
    pid: int = 0
    host: str = ""
    version: str = ""
    resumed: bool = False


@dataclass(slots=True, kw_only=True)
class ExperimentStarted(IndexedEvent):
    TYPE: ClassVar[str] = "experiment_started"
    kind: str = "agent"
    parent: str | None = None
    commit: str | None = None
    description: str = ""
    script_sha256: str | None = None
    manifest_digest: str | None = None
    agent: dict[str, Any] | None = None  # the proposal's meta: model, edit format, attempts, prompts digest
    reverts: int | None = None  # kind revert: the index of the kept change taken back

    def validate(self) -> None:
        _index(self)
        if self.kind not in KINDS:
            raise EventError(f"experiment_started kind must be one of {KINDS}, got {self.kind!r}")


@dataclass(slots=True, kw_only=True)
class TrainingStarted(IndexedEvent):
    """A training subprocess was started; its log is ``log`` (relative to the run's state directory)."""

    TYPE: ClassVar[str] = "training_started"
    attempt: int = 0  # numbers the trainings of one experiment (logs, metrics files)
    seed: int | None = None
    log: str = ""
    purpose: str = "experiment"  # baseline | experiment | confirm (another seed) | repair (the agent's fix)
    budget_seconds: float | None = None

    def validate(self) -> None:
        _index(self)
        if self.purpose not in TRAINING_PURPOSES:
            raise EventError(f"training_started purpose must be one of {TRAINING_PURPOSES}, got {self.purpose!r}")


@dataclass(slots=True, kw_only=True)
class TrainingFinished(IndexedEvent):
    TYPE: ClassVar[str] = "training_finished"
    seed: int | None = None
    outcome: str = "crash"
    val_bpb: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    wall_seconds: float | None = None
    log: str | None = None
    reason: str = ""
    tail: str = ""
    others_cpu: float | None = None  # the share of the machine's CPU other processes took meanwhile (contention.py)
    others_gpu: float | None = None  # ... of the busiest NVIDIA GPU's SMs, where nvidia-smi can say (gpuload.py)

    def validate(self) -> None:
        _index(self)
        if self.outcome not in OUTCOMES:
            raise EventError(f"training_finished outcome must be one of {OUTCOMES}, got {self.outcome!r}")


@dataclass(slots=True, kw_only=True)
class Decision(IndexedEvent):
    """The experiment's outcome. The baseline's is recorded with status ``keep`` (upstream's convention)."""

    TYPE: ClassVar[str] = "decision"
    status: str = "discard"
    val_bpb: float | None = None
    delta: float | None = None
    reason: str = ""
    test_bpb: float | None = None
    timing: dict[str, Any] | None = None  # agent / train / engine seconds of the experiment

    def validate(self) -> None:
        _index(self)
        if self.status not in DECISION_STATUSES:
            raise EventError(f"decision status must be one of {DECISION_STATUSES}, got {self.status!r}")


@dataclass(slots=True, kw_only=True)
class ExperimentRepaired(IndexedEvent):
    """After a crash the agent fixed its change; the experiment continues with the new commit."""

    TYPE: ClassVar[str] = "experiment_repaired"
    commit: str | None = None
    attempt: int = 1
    after: str = ""  # the failure that was repaired (crash, oom)
    description: str = ""
    script_sha256: str | None = None
    agent: dict[str, Any] | None = None


@dataclass(slots=True, kw_only=True)
class ExperimentInterrupted(IndexedEvent):
    """Terminal, like a decision with status ``interrupted``."""

    TYPE: ClassVar[str] = "experiment_interrupted"
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class NoiseEstimated(Event):
    TYPE: ClassVar[str] = "noise_estimate"
    sigma: float | None = None
    dof: int = 0
    source: str = ""


@dataclass(slots=True, kw_only=True)
class Phase(Event):
    """What the engine is doing now (``index``: the experiment it is for, when there is one)."""

    TYPE: ClassVar[str] = "phase"
    phase: str = "starting"
    index: int | None = None
    detail: str = ""

    def validate(self) -> None:
        if self.phase not in PHASES:
            raise EventError(f"phase must be one of {PHASES}, got {self.phase!r}")


@dataclass(slots=True, kw_only=True)
class ControlTaken(Event):
    """A client's command, as the engine took it (``id``: the id the client's ``send`` returned)."""

    TYPE: ClassVar[str] = "control"
    command: str = ""
    id: str | None = None
    sent: float | None = None  # the client's clock (seconds since the epoch)
    outcome: str = ""  # what the engine did with it: done, queued, ignored / refused (with why)
    args: dict[str, Any] | None = None  # the command's arguments (revert, retest: index, seeds)


@dataclass(slots=True, kw_only=True)
class Paused(Event):
    TYPE: ClassVar[str] = "paused"
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class Resumed(Event):
    TYPE: ClassVar[str] = "resumed"


@dataclass(slots=True, kw_only=True)
class Stalled(Event):
    """No progress (an experiment or a training finishing, a line of training output) for ``seconds``: the
    engine is alive but may be stuck (engine.stall). Told once per episode; any later progress ends it."""

    TYPE: ClassVar[str] = "stalled"
    seconds: float = 0.0
    limit_seconds: float = 0.0
    phase: str = ""  # what the engine was doing (a phase, or training)
    index: int | None = None
    detail: str = ""

    def validate(self) -> None:
        if not self.seconds > 0:
            raise EventError("stalled needs the seconds without progress")


@dataclass(slots=True, kw_only=True)
class Stopped(Event):
    TYPE: ClassVar[str] = "stopped"
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class AgentErrorEvent(Event):
    """An unusable reply (or, with ``unavailable``, a model that cannot be reached: nothing is spent)."""

    TYPE: ClassVar[str] = "agent_error"
    message: str = ""
    unavailable: bool | None = None
    retry_in: float | None = None
    description: str | None = None


@dataclass(slots=True, kw_only=True)
class ProposalRejected(Event):
    """A proposal failed the checks (integrity, duplicate) and the agent was asked for a fix."""

    TYPE: ClassVar[str] = "proposal_rejected"
    description: str = ""
    reason: str = ""
    round: int = 1


@dataclass(slots=True, kw_only=True)
class Remeasured(IndexedEvent):
    """More seeds of a decided experiment (a re-test, or a revert measured): its val_bpb over all its seeds."""

    TYPE: ClassVar[str] = "remeasured"
    val_bpb: float | None = None
    seeds: int = 0  # trainings added
    request: str | None = None  # the id of the control command that asked for it


@dataclass(slots=True, kw_only=True)
class ReviewMarked(IndexedEvent):
    """The user's verdict on a kept change (``unreviewed`` takes a verdict back)."""

    TYPE: ClassVar[str] = "review"
    verdict: str = "unreviewed"

    def validate(self) -> None:
        _index(self)
        if self.verdict not in VERDICTS:
            raise EventError(f"review verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(slots=True, kw_only=True)
class NoteAdded(Event):
    """A steering note for the researcher, included in its proposals until removed."""

    TYPE: ClassVar[str] = "note_added"
    id: str = ""
    text: str = ""

    def validate(self) -> None:
        if not self.id or not self.text.strip():
            raise EventError("note_added needs an id and a non-empty text")


@dataclass(slots=True, kw_only=True)
class NoteRemoved(Event):
    TYPE: ClassVar[str] = "note_removed"
    id: str = ""


@dataclass(slots=True, kw_only=True)
class UnknownEvent(Event):
    """An event type this version does not know: stored, shown raw, otherwise ignored."""

    TYPE: ClassVar[str] = ""
    type: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"event": self.type, **self.extra}
        if self.ts:
            out["ts"] = self.ts
        return out


EVENT_TYPES: dict[str, type[Event]] = {cls.TYPE: cls for cls in (
    RunStarted, ExperimentStarted, TrainingStarted, TrainingFinished, Decision, ExperimentRepaired,
    ExperimentInterrupted, NoiseEstimated, Phase, ControlTaken, Paused, Resumed, Stalled, Stopped, AgentErrorEvent,
    ProposalRejected, Remeasured, ReviewMarked, NoteAdded, NoteRemoved,
)}
INDEXED = tuple(t for t, cls in EVENT_TYPES.items() if issubclass(cls, IndexedEvent))
_FIELDS = {t: {f.name for f in dataclasses.fields(cls)} - {"extra"} for t, cls in EVENT_TYPES.items()}


def parse(raw: dict[str, Any]) -> Event:
    """The typed event of one ledger line. Unknown fields go to ``extra``; an unknown type is UnknownEvent.

    Does not validate (a reader takes what was written); :func:`validate_dict` is the writer's check.
    """
    kind = raw.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownEvent(type=str(kind), ts=raw.get("ts"), extra={k: v for k, v in raw.items() if k not in ("event", "ts")})
    fields = dict(raw)
    del fields["event"]
    try:
        return cls(**fields)  # the common case: exactly the fields this version knows (fast: ~40k events on load)
    except TypeError:
        pass
    names = _FIELDS[kind]  # type: ignore[index]
    known = {k: v for k, v in fields.items() if k in names}
    extra = {k: v for k, v in fields.items() if k not in names}
    if issubclass(cls, IndexedEvent) and "index" not in known:
        known["index"] = -1  # a damaged event: the reducer skips it
    try:
        return cls(**known, extra=extra)
    except TypeError:  # pragma: no cover - only for a field list out of step with the dataclass
        return UnknownEvent(type=str(kind), ts=raw.get("ts"), extra=dict(raw))


def validate_dict(raw: dict[str, Any]) -> None:
    """Raise :class:`EventError` unless ``raw`` is a well-formed event (the writer's side of the contract)."""
    kind = raw.get("event")
    if not isinstance(kind, str) or not kind:
        raise EventError(f"an event needs a non-empty string 'event' field, got {raw!r:.200}")
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return  # other types are allowed: stored and returned, ignored by the reducer
    if issubclass(cls, IndexedEvent) and "index" not in raw:
        raise EventError(f"{kind} event needs a non-negative integer 'index', got None")
    parse(raw).validate()
