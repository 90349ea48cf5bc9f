"""The append-only record of a run: ``<run>/.autoresearch/events.jsonl`` and the derived ``results.tsv``.

Every event is one JSON object on one line, written with a single ``write`` and made durable with
``fsync`` before :meth:`Ledger.append` returns (the directory is fsynced too when the file is created),
so a kill -9 at any moment loses at most the event being written. Each event gets ``"ts"`` (ISO 8601,
UTC, milliseconds, ``Z`` suffix) unless the caller already set one.

Event contract with the loop (field ``"event"``):

- ``run_started`` {pid, host, version, resumed}
- ``experiment_started`` {index (0 = baseline), kind ("baseline" | "agent"), parent, commit, description,
  script_sha256, manifest_digest}
- ``training_finished`` {index, seed, outcome (ok | crash | oom | nan | timeout | invalid | interrupted),
  val_bpb, metrics, peak_memory_mb, wall_seconds, log, reason}; an experiment can have several (seeds)
- ``decision`` {index, status (keep | discard | crash | oom | nan | timeout | invalid), val_bpb, delta,
  reason, test_bpb?}; the baseline's decision is recorded with status ``keep`` (upstream's convention)
- ``experiment_repaired`` {index, commit, attempt, after, description, script_sha256}: after a crash the agent
  fixed its change; the experiment continues with the new commit (the crashed runs move to superseded_runs)
- ``experiment_interrupted`` {index, reason}: terminal, like a decision with status ``interrupted``
- ``noise_estimate`` {sigma, dof, source}
- ``control`` {command}, ``paused`` {reason}, ``resumed`` {}, ``stopped`` {reason}, ``agent_error``
  {message}, and any other type: stored and returned by :meth:`Ledger.events`, ignored by the reducer.

Damage on load. The engine can be killed in the middle of a write, leaving a truncated (or, on some
file systems after a power loss, zero-filled) last line. A writable ledger repairs that on load: the bad
tail is moved to ``events.jsonl.corrupt-<UTC timestamp>`` (kept, never deleted) and the file is truncated
to the end of its last good line. A bad line followed by good lines is not a torn write: it raises
:class:`LedgerCorruptError` naming the line, rather than silently dropping data. A read-only ledger
(``writable=False``, for clients such as the TUI tailing another process's run) never modifies the file:
it stops before a partial or bad last line and picks it up (or not) on a later read.

The ledger reads the file once and then keeps an in-memory cache that :meth:`Ledger.append` extends, with
the reduction to :class:`Experiment` records maintained incrementally, so the loop's per-experiment cost is
one write + fsync. :meth:`Ledger.tail_new_events` reads what another process appended since the last read
(by file offset); :meth:`Ledger.reload` re-reads everything.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

STATE_DIR = ".autoresearch"
EVENTS_FILE = "events.jsonl"
RESULTS_FILE = "results.tsv"

OUTCOMES = ("ok", "crash", "oom", "nan", "timeout", "invalid", "interrupted")
DECISION_STATUSES = ("keep", "discard", "crash", "oom", "nan", "timeout", "invalid")
FAILURE_STATUSES = ("crash", "oom", "nan", "timeout", "invalid", "interrupted")
KINDS = ("baseline", "agent")

_SETTLE_TRIES = 3  # a writable ledger re-reads a bad tail up to this many times before repairing it ...
_SETTLE_SECONDS = 0.05  # ... waiting this long each time for a write in flight to complete

# events that must carry an integer experiment index
_INDEXED = ("experiment_started", "training_finished", "decision", "experiment_interrupted", "experiment_repaired")

UPSTREAM_COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")
EXTRA_COLUMNS = ("index", "delta", "seeds", "training_seconds", "test_bpb")
RESULTS_HEADER = "\t".join(UPSTREAM_COLUMNS + EXTRA_COLUMNS)


class LedgerError(Exception):
    """Base class of ledger errors."""


class LedgerCorruptError(LedgerError):
    """The events file is damaged somewhere other than its last line (not a torn write)."""


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with milliseconds, e.g. ``2026-03-08T23:14:05.123Z``."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _finite_or_none(value: Any) -> Any:
    """A copy of a JSON-like value with NaN/inf floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _encode(event: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or inf somewhere (e.g. in the harness metrics): store null instead
        text = json.dumps(_finite_or_none(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _validate(event: dict[str, Any]) -> None:
    kind = event.get("event")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"an event needs a non-empty string 'event' field, got {event!r:.200}")
    if kind in _INDEXED:
        index = event.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"{kind} event needs a non-negative integer 'index', got {index!r}")
    if kind == "training_finished" and event.get("outcome") not in OUTCOMES:
        raise ValueError(f"training_finished outcome must be one of {OUTCOMES}, got {event.get('outcome')!r}")
    if kind == "decision" and event.get("status") not in DECISION_STATUSES:
        raise ValueError(f"decision status must be one of {DECISION_STATUSES}, got {event.get('status')!r}")
    if kind == "experiment_started" and event.get("kind", "agent") not in KINDS:
        raise ValueError(f"experiment_started kind must be one of {KINDS}, got {event.get('kind')!r}")


# ----------------------------------------------------------------------------------------------------
# reduction to experiments


@dataclass(slots=True)
class Run:
    """One training run of an experiment (one seed)."""

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
    runs: list[Run] = field(default_factory=list)
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
    superseded_runs: list[Run] = field(default_factory=list)  # trainings of versions replaced by a repair
    earlier_sha256: list[str] = field(default_factory=list)  # those versions' script hashes (duplicate detection)

    @property
    def is_open(self) -> bool:
        return self.status is None

    @property
    def ok_values(self) -> list[float]:
        """val_bpb of every successful run (what the policy compares)."""
        return [r.val_bpb for r in self.runs if r.ok]  # type: ignore[misc]

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def _recompute(self) -> None:
        """Aggregates over the runs (one pass: it runs for every training_finished while loading)."""
        mem = None
        secs_sum, secs_n, steps_sum, steps_n, val_sum, val_n = 0.0, 0, 0.0, 0, 0.0, 0
        for r in self.runs:
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


class _Reducer:
    """Folds events into experiments, one event at a time (so appends stay O(1))."""

    def __init__(self) -> None:
        self.experiments: dict[int, Experiment] = {}
        self.last_by_type: dict[str, dict[str, Any]] = {}

    def _get(self, index: int) -> Experiment:
        exp = self.experiments.get(index)
        if exp is None:  # an event for an experiment whose start we never saw: keep it, do not drop data
            exp = self.experiments[index] = Experiment(index=index)
        return exp

    def apply(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if not isinstance(kind, str):
            return
        self.last_by_type[kind] = ev
        index = ev.get("index")
        if kind not in _INDEXED or not isinstance(index, int):
            return
        if kind == "experiment_started":
            # a repeated start of the same index replaces the record (latest start wins)
            exp = self.experiments[index] = Experiment(index=index)
            exp.kind = ev.get("kind") or "agent"
            exp.commit = ev.get("commit")
            exp.parent = ev.get("parent")
            exp.description = ev.get("description") or ""
            exp.script_sha256 = ev.get("script_sha256")
            exp.manifest_digest = ev.get("manifest_digest")
            exp.started = ev.get("ts")
        elif kind == "training_finished":
            exp = self._get(index)
            metrics = ev.get("metrics")
            val = ev.get("val_bpb")
            exp.runs.append(Run(
                seed=ev.get("seed"),
                outcome=ev.get("outcome") or "crash",
                val_bpb=float(val) if isinstance(val, (int, float)) else None,
                metrics=metrics if isinstance(metrics, dict) else {},
                peak_memory_mb=ev.get("peak_memory_mb"),
                wall_seconds=ev.get("wall_seconds"),
                log=ev.get("log"),
                reason=ev.get("reason") or "",
                ts=ev.get("ts"),
            ))
            exp._recompute()
        elif kind == "decision":
            exp = self._get(index)
            exp.status = ev.get("status")
            if "val_bpb" in ev:
                val = ev.get("val_bpb")
                exp.val_bpb = float(val) if isinstance(val, (int, float)) else None
            else:
                values = exp.ok_values
                exp.val_bpb = sum(values) / len(values) if values else None
            delta = ev.get("delta")
            exp.delta = float(delta) if isinstance(delta, (int, float)) else None
            exp.reason = ev.get("reason") or ""
            test = ev.get("test_bpb")
            exp.test_bpb = float(test) if isinstance(test, (int, float)) else None
            exp.finished = ev.get("ts")
        elif kind == "experiment_repaired":
            exp = self._get(index)
            exp.commit = ev.get("commit") or exp.commit
            exp.description = ev.get("description") or exp.description
            if exp.script_sha256:
                exp.earlier_sha256.append(exp.script_sha256)
            exp.script_sha256 = ev.get("script_sha256") or exp.script_sha256
            exp.repairs += 1
            exp.superseded_runs.extend(exp.runs)  # the crashed version's runs: kept, but not this version's figures
            exp.runs = []
            exp._recompute()
        elif kind == "experiment_interrupted":
            exp = self._get(index)
            exp.status = "interrupted"
            exp.reason = ev.get("reason") or ""
            exp.finished = ev.get("ts")


# ----------------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Parsed:
    events: list[dict[str, Any]]
    consumed: int  # bytes of `data` that hold good lines (the new offset is base + consumed)
    bad_tail: bytes  # trailing bad lines and/or a final line without newline
    missing_newline: bool = False  # the tail is one complete JSON object that only lacks its newline


_scan_once = json.JSONDecoder().scan_once


def _load_line(line: str | bytes) -> Any:
    """One line's JSON value, or None if the line is not exactly one JSON value."""
    if isinstance(line, str):
        try:
            obj, end = _scan_once(line, 0)
        except (StopIteration, ValueError):
            pass  # leading whitespace or invalid: the full parser decides
        else:
            if end == len(line) or not line[end:].strip():
                return obj
            return None
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None


def _parse(data: bytes, base: int, path: Path, first_line: int) -> _Parsed:
    last_nl = data.rfind(b"\n")
    complete_end = last_nl + 1
    events: list[dict[str, Any]] = []
    consumed = 0
    bad_at: tuple[int, int] | None = None  # (byte offset in data, line number) of the first bad line
    pos = 0
    lineno = first_line
    try:  # decode once and scan each line with the C scanner (the ledger's load time is mostly JSON)
        lines: list[Any] = data[:complete_end].decode("utf-8").split("\n")[:-1] if complete_end else []
        as_text = True
    except UnicodeDecodeError:  # some line is not UTF-8 (damage): fall back to bytes, line by line
        lines = data[:complete_end].split(b"\n")[:-1]
        as_text = False
    for line in lines:
        size = len(line.encode("utf-8")) if as_text and not line.isascii() else len(line)
        end = pos + size + 1
        if line.strip():
            obj = _load_line(line)
            if isinstance(obj, dict):
                if bad_at is not None:
                    raise LedgerCorruptError(
                        f"{path}: line {bad_at[1]} (byte {base + bad_at[0]}) is not a valid JSON event, but "
                        f"line {lineno} after it is. The ledger is damaged in the middle (not a torn last "
                        f"write); refusing to drop data. Inspect the file, move the bad line out by hand and "
                        f"restart.")
                events.append(obj)
                consumed = end
            elif bad_at is None:
                bad_at = (pos, lineno)
        elif bad_at is None:
            consumed = end  # blank lines are harmless
        pos = end
        lineno += 1
    tail = data[consumed:]
    missing_newline = False
    if bad_at is None and complete_end < len(data):
        rest = data[complete_end:]
        if rest.strip():
            missing_newline = isinstance(_load_line(rest), dict)
    return _Parsed(events, consumed, tail, missing_newline)


# ----------------------------------------------------------------------------------------------------
# the ledger


class Ledger:
    """The event ledger of one run directory (``<run_dir>/.autoresearch/events.jsonl``).

    Only the engine that holds the run's lock should open it writable (the default). Clients of another
    process's run (``autoresearch status``, the TUI) should pass ``writable=False``: the file is then never
    modified and a partial last line is left for a later :meth:`tail_new_events`. (A writable instance that
    finds a bad tail first waits briefly for it to change, so even a mistaken writable client does not cut
    a live engine's in-flight line in half.) Thread-safe.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, writable: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / STATE_DIR
        self.path = self.dir / EVENTS_FILE
        self.results_path = self.dir / RESULTS_FILE
        self.writable = writable
        self._lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self._loaded = False
        self._offset = 0  # bytes of the file already read into the cache (always at a line boundary)
        self._lines = 0  # lines already read (for error messages)
        self._events: list[dict[str, Any]] = []
        self._reducer = _Reducer()
        self.repaired: list[Path] = []  # corrupt-tail files written by this instance
        self.pending_bytes = 0  # read-only: bytes after the last good line not (yet) understood

    # -- reading -------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._read_new()
            self._loaded = True

    def _read_chunk(self) -> bytes | None:
        """The bytes after the cached offset (None when there are none); resets the cache if the file shrank."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if self._offset:  # the file went away: start over
                self._clear()
                self._loaded = True
            return None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < self._offset:  # truncated or replaced behind our back: rebuild from scratch
                self._clear()
                self._loaded = True
            if size == self._offset:
                self.pending_bytes = 0
                return None
            f.seek(self._offset)
            return f.read(size - self._offset)

    def _read_new(self) -> list[dict[str, Any]]:
        """Read and reduce what follows the cached offset; repair a torn tail when writable."""
        for attempt in range(_SETTLE_TRIES + 1):
            data = self._read_chunk()
            if data is None:
                return []
            parsed = _parse(data, self._offset, self.path, self._lines + 1)
            if not (self.writable and parsed.bad_tail and not parsed.missing_newline) or attempt == _SETTLE_TRIES:
                break
            # Before calling a tail torn, make sure it is not a write in flight from another process (a client
            # that opened the ledger writable by mistake must not cut a live engine's line in half).
            time.sleep(_SETTLE_SECONDS)
            try:
                if self.path.stat().st_size == self._offset + len(data):
                    break
            except FileNotFoundError:
                break
        new_offset = self._offset + parsed.consumed
        if parsed.bad_tail:
            if self.writable:
                if parsed.missing_newline:  # a whole event that only lacks its newline: keep it
                    with open(self.path, "ab") as out:
                        out.write(b"\n")
                        out.flush()
                        os.fsync(out.fileno())
                    parsed.events.append(json.loads(parsed.bad_tail))
                    new_offset = self._offset + len(data) + 1
                else:
                    self._repair(new_offset, parsed.bad_tail)
                self.pending_bytes = 0
            else:
                self.pending_bytes = len(parsed.bad_tail)
        else:
            self.pending_bytes = 0
        self._offset = new_offset
        self._lines += data[: parsed.consumed].count(b"\n") + (1 if parsed.missing_newline and self.writable else 0)
        apply = self._reducer.apply
        for ev in parsed.events:
            apply(ev)
        self._events.extend(parsed.events)
        return parsed.events

    def _repair(self, good_end: int, tail: bytes) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        with open(target, "xb") as out:
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())
        with open(self.path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.dir)
        self.repaired.append(target)

    def reload(self) -> None:
        """Forget the cache and read the file again."""
        with self._lock:
            self._clear()
            self._ensure_loaded()

    def tail_new_events(self) -> list[dict[str, Any]]:
        """Events appended (by anyone) since this instance last read the file; all of them on first use.

        If the file shrank or was replaced, the cache is rebuilt and every event is returned again.
        """
        with self._lock:
            if not self._loaded:
                self._ensure_loaded()
                return list(self._events)
            before = len(self._events)
            new = self._read_new()
            if len(self._events) != before + len(new):  # rebuilt
                return list(self._events)
            return new

    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first (a new list; the dicts are the cache's own: do not modify them)."""
        with self._lock:
            self._ensure_loaded()
            return list(self._events)

    def __len__(self) -> int:
        with self._lock:
            self._ensure_loaded()
            return len(self._events)

    # -- writing -------------------------------------------------------------------------------------

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Validate, timestamp, write and fsync one event; return the stored event."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append several events with one write and one fsync (imports, benchmarks)."""
        if not self.writable:
            raise LedgerError("this ledger was opened read-only")
        stored: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        for event in events:
            _validate(event)
            ev = dict(event)
            if not ev.get("ts"):
                ev["ts"] = utc_now_iso()
            line = _encode(ev)
            stored.append(json.loads(line))  # exactly what a reader will see (NaN -> null, tuples -> lists)
            chunks.append(line)
        if not chunks:
            return []
        blob = b"".join(chunks)
        with self._lock:
            self._ensure_loaded()
            new_dir = not self.dir.is_dir()
            self.dir.mkdir(parents=True, exist_ok=True)
            if new_dir:
                _fsync_dir(self.dir.parent)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size != self._offset:  # someone else appended (or damaged the tail): catch up first
                    self._read_new()
                    size = os.fstat(fd).st_size
                    if size != self._offset:  # pragma: no cover - only if the file changes under us again
                        raise LedgerError(f"{self.path} changed while appending; is another engine writing it?")
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.dir)
            self._offset += len(blob)
            self._lines += len(chunks)
            apply = self._reducer.apply
            for ev in stored:
                apply(ev)
            self._events.extend(stored)
        return stored

    # -- reduced views -------------------------------------------------------------------------------

    def experiments(self) -> list[Experiment]:
        """All experiments in the order they started (cached objects: read-only)."""
        with self._lock:
            self._ensure_loaded()
            return list(self._reducer.experiments.values())

    def experiment(self, index: int) -> Experiment | None:
        with self._lock:
            self._ensure_loaded()
            return self._reducer.experiments.get(index)

    def open_experiments(self) -> list[Experiment]:
        """Experiments started but with neither a decision nor an interruption."""
        return [e for e in self.experiments() if e.status is None]

    def open_experiment(self) -> Experiment | None:
        """The latest open experiment: what a resumed engine must mark interrupted (None if none)."""
        for exp in reversed(self.experiments()):
            if exp.status is None:
                return exp
        return None

    def best(self) -> Experiment | None:
        """The current best: the latest experiment whose decision is keep (the baseline's included)."""
        for exp in reversed(self.experiments()):
            if exp.status == "keep":
                return exp
        return None

    def next_index(self) -> int:
        with self._lock:
            self._ensure_loaded()
            exps = self._reducer.experiments
            return max(exps) + 1 if exps else 0

    def last(self, event_type: str) -> dict[str, Any] | None:
        """The most recent event of a type (e.g. ``noise_estimate``, ``paused``), or None."""
        with self._lock:
            self._ensure_loaded()
            return self._reducer.last_by_type.get(event_type)

    # -- results.tsv ---------------------------------------------------------------------------------

    def results_rows(self) -> list[str]:
        """The lines of results.tsv (header first, no newlines); open experiments are left out."""
        lines = [RESULTS_HEADER]
        for exp in self.experiments():
            if exp.status is None:
                continue
            lines.append(format_result_row(exp))
        return lines

    def write_results_tsv(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Regenerate results.tsv atomically (temp file in the same directory, fsync, rename)."""
        target = Path(path) if path is not None else self.results_path
        text = "\n".join(self.results_rows()) + "\n"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(target.parent)
        return target


def _clean_text(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines()).strip()


def format_result_row(exp: Experiment) -> str:
    """One results.tsv line in upstream's format (+ the extra columns)."""
    status = exp.status or ""
    val = exp.val_bpb if exp.val_bpb is not None and status not in FAILURE_STATUSES else None
    cols = [
        _clean_text(exp.commit or "")[:7],  # upstream's short sha
        f"{val:.6f}" if val is not None else "0.000000",
        f"{exp.memory_gb:.1f}" if exp.memory_gb is not None else "0.0",
        status,
        _clean_text(exp.description),
        str(exp.index),
        f"{exp.delta:+.6f}" if exp.delta is not None else "",
        str(len(exp.runs)),
        f"{exp.training_seconds:.1f}" if exp.training_seconds is not None else "",
        f"{exp.test_bpb:.6f}" if exp.test_bpb is not None else "",
    ]
    return "\t".join(cols)


# ----------------------------------------------------------------------------------------------------
# reading results.tsv (ours or upstream's)


@dataclass
class ResultRow:
    """One row of a results.tsv. ``val_bpb`` is None for failures (upstream writes 0.000000 there)."""

    commit: str
    val_bpb: float | None
    memory_gb: float | None
    status: str
    description: str
    index: int
    delta: float | None = None
    seeds: int | None = None
    training_seconds: float | None = None
    test_bpb: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value is not None else None


def read_results_tsv(path: str | os.PathLike[str]) -> list[ResultRow]:
    """Read a results.tsv written by upstream autoresearch (5 columns) or by this ledger (10 columns).

    Columns are matched by the header's names; a file without a header is read as upstream's 5 columns.
    Without an ``index`` column, rows are numbered from 0 in file order. Tabs inside a description of a
    5-column file (more fields than header names) are kept as spaces.
    """
    rows: list[ResultRow] = []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return rows
    first = lines[0].split("\t")
    if first and first[0].strip().lower() == "commit":
        header = [h.strip().lower() for h in first]
        body = lines[1:]
    else:
        header = list(UPSTREAM_COLUMNS)
        body = lines
    desc_at = header.index("description") if "description" in header else None
    for n, line in enumerate(body):
        fields = line.split("\t")
        if len(fields) > len(header) and desc_at is not None and desc_at == len(header) - 1:
            fields = fields[:desc_at] + [" ".join(fields[desc_at:])]
        rec = dict(zip(header, fields))
        status = rec.get("status", "").strip()
        val = _float(rec.get("val_bpb"))
        if val is not None and val == 0.0 and status not in ("keep", "discard"):
            val = None
        memory = _float(rec.get("memory_gb"))
        index = _int(rec.get("index"))
        rows.append(ResultRow(
            commit=rec.get("commit", "").strip(),
            val_bpb=val,
            memory_gb=memory,
            status=status,
            description=rec.get("description", "").strip(),
            index=index if index is not None else n,
            delta=_float(rec.get("delta")),
            seeds=_int(rec.get("seeds")),
            training_seconds=_float(rec.get("training_seconds")),
            test_bpb=_float(rec.get("test_bpb")),
            extra={k: v for k, v in rec.items() if k not in UPSTREAM_COLUMNS + EXTRA_COLUMNS},
        ))
    return rows
