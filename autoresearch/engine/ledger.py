"""The append-only record of a run: ``<run>/.autoresearch/events.jsonl`` and the derived ``results.tsv``.

Every event is one JSON object on one line, written with a single ``write`` and made durable with
``fsync`` before :meth:`Ledger.append` returns (the directory is fsynced too when the file is created),
so a kill -9 at any moment loses at most the event being written. Each event gets ``"ts"`` (ISO 8601,
UTC, milliseconds, ``Z`` suffix) unless the caller already set one.

The events themselves (their types and fields) are defined in :mod:`autoresearch.engine.events`; the
reduction to experiments in :mod:`autoresearch.engine.experiments`; results.tsv in :mod:`autoresearch.engine.results`.

Damage on load. The engine can be killed in the middle of a write, leaving a truncated (or, on some
file systems after a power loss, zero-filled) last line. A writable ledger repairs that on load: the bad
tail is moved to ``events.jsonl.corrupt-<UTC timestamp>`` (kept, never deleted) and the file is truncated
to the end of its last good line. A bad line followed by good lines is not a torn write: it raises
:class:`LedgerCorruptError` naming the line, rather than silently dropping data. A read-only ledger
(``writable=False``, for clients such as the TUI tailing another process's run) never modifies the file:
it stops before a partial or bad last line and picks it up (or not) on a later read.

The ledger reads the file once and then keeps an in-memory cache that :meth:`Ledger.append` extends, with
the reduction to :class:`Experiment` records maintained incrementally, so the loop's per-experiment cost is
one write + fsync. Writers in several processes (the engine, and a client recording a review mark or a
note) take turns through an exclusive ``flock`` on the file, and each catches up with the other's lines
before it appends. :meth:`Ledger.tail_new_events` reads what another process appended since the last read
(by file offset); :meth:`Ledger.reload` re-reads everything.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ..paths import STATE_DIR
from .events import Event, validate_dict
from .experiments import Experiment, Note, Reducer, Request
from .results import RESULTS_HEADER, format_result_row

EVENTS_FILE = "events.jsonl"
RESULTS_FILE = "results.tsv"

_SETTLE_TRIES = 3  # a writable ledger re-reads a bad tail up to this many times before repairing it ...
_SETTLE_SECONDS = 0.05  # ... waiting this long each time for a write in flight to complete


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
        self.generation = -1  # +1 each time the cache is rebuilt from scratch (a client starts over then)
        # called with each stored event (read-only) once it is durable; exceptions are swallowed (engine.notify)
        self.observers: list[Callable[[dict[str, Any]], Any]] = []
        self._clear()

    def _clear(self) -> None:
        self.generation += 1
        self._loaded = False
        self._offset = 0  # bytes of the file already read into the cache (always at a line boundary)
        self._lines = 0  # lines already read (for error messages)
        self._events: list[dict[str, Any]] = []
        self._typed: list[Event | None] = []  # the same events typed (the reducer's parse), for clients
        self._reducer = Reducer()
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
        self._typed.extend([apply(ev) for ev in parsed.events])
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
            return self._events[self._tail()[0]:]

    def tail_new_typed(self) -> list[Event]:
        """As :meth:`tail_new_events`, typed (:mod:`~autoresearch.engine.events`); lines that are not events are
        left out. (One cursor for both: use one of the two per instance.)"""
        with self._lock:
            return [ev for ev in self._typed[self._tail()[0]:] if ev is not None]

    def _tail(self) -> tuple[int, int]:
        """Read what is new; (start, end) of the new events in the cache (start 0 when it was rebuilt)."""
        if not self._loaded:
            self._ensure_loaded()
            return 0, len(self._events)
        generation, before = self.generation, len(self._events)
        self._read_new()
        if self.generation != generation:  # rebuilt: everything is new
            return 0, len(self._events)
        return before, len(self._events)

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

    def append(self, event: Event | dict[str, Any]) -> dict[str, Any]:
        """Validate, timestamp, write and fsync one event (typed, or its dict); return the stored event."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[Event | dict[str, Any]]) -> list[dict[str, Any]]:
        """Append several events with one write and one fsync (imports, benchmarks)."""
        if not self.writable:
            raise LedgerError("this ledger was opened read-only")
        stored: list[dict[str, Any]] = []
        chunks: list[bytes] = []
        for event in events:
            ev = event.to_dict() if isinstance(event, Event) else dict(event)
            validate_dict(ev)
            if not ev.get("ts"):
                ev["ts"] = utc_now_iso()
            line = _encode(ev)
            stored.append(json.loads(line))  # exactly what a reader will see (NaN -> null, tuples -> lists)
            chunks.append(line)
        if not chunks:
            return []
        blob = b"".join(chunks)
        with self._lock:
            new_dir = not self.dir.is_dir()
            self.dir.mkdir(parents=True, exist_ok=True)
            if new_dir:
                _fsync_dir(self.dir.parent)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # Writers take turns (the engine, a client's review mark or note), and a first load, which may
                # repair a torn tail, happens under the lock too: never while another writer is mid-line.
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._ensure_loaded()
                size = os.fstat(fd).st_size
                if size != self._offset:  # someone else appended (or damaged the tail): catch up first
                    self._read_new()
                    size = os.fstat(fd).st_size
                    if size != self._offset:  # pragma: no cover - only if the file changes under us again
                        raise LedgerError(f"{self.path} changed while appending; is another engine writing it?")
                view = memoryview(blob)
                try:
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    os.fsync(fd)
                except OSError:  # a full disk: take back the part written, so no torn line is left for later
                    os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.dir)
            self._offset += len(blob)
            self._lines += len(chunks)
            apply = self._reducer.apply
            self._typed.extend([apply(ev) for ev in stored])
            self._events.extend(stored)
        for ev in stored if self.observers else ():  # durable now; outside the lock (an observer may read the ledger)
            for observer in list(self.observers):
                try:
                    observer(ev)
                except Exception:  # a notifier must never make the ledger fail
                    pass
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

    def notes(self) -> list[Note]:
        """The steering notes in force, oldest first."""
        with self._lock:
            self._ensure_loaded()
            return list(self._reducer.notes.values())

    def requests(self) -> list[Request]:
        """Reverts and re-tests the engine took and has not carried out yet, oldest first."""
        with self._lock:
            self._ensure_loaded()
            return list(self._reducer.requests.values())

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


