"""Run one process of the agent's code (a training, a serving process) under a hard deadline.

The process runs in its own process group (session), with stdin from /dev/null and the environment it is
given (``backends.agent_env``: an allowlist). Its combined stdout/stderr is streamed line by line to a log
file (flushed as it comes) and to an optional callback. A watchdog samples the memory of the whole process
tree and kills the tree when the deadline passes. What the process prints or writes is never a result:
:mod:`autoresearch.training.trial` takes the figures from the data server and the scorer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from ..harness.sandbox import kill_tree

# contended: it trained, but other processes took the machine meanwhile: not used (the engine trains it again)
# early_stop: its loss curve was judged hopeless part-way (engine.earlystop); not scored
# disk_full: the disk filled up around it (engine.diskspace): the machine's fault; not used, trained again
OUTCOMES = ("ok", "crash", "oom", "nan", "timeout", "invalid", "interrupted", "contended", "early_stop", "disk_full")
# a SIGKILL of the training: its own (-9), or as the sandbox launcher reports its child's (128 + 9)
_SIGKILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)
_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "CUDA out of memory", "out of memory", "[METAL] Command buffer execution failed: Insufficient Memory")


@dataclass
class RunResult:
    status: str  # one of OUTCOMES
    metrics: dict[str, Any] = field(default_factory=dict)  # trusted figures only (data server, scorer)
    returncode: int | None = None
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0  # resident memory of the whole process tree, sampled
    log_path: Path | None = None
    reason: str = ""
    tail: str = ""  # last lines of the log (the traceback for a crash)
    test_bpb: float | None = None  # the held-out score: for the engine's decision only, never in metrics or logs
    held_out: Any = None  # trial.HeldOut: how to score the test split later (kept weights), or None

    @property
    def val_bpb(self) -> float | None:
        return self.metrics.get("val_bpb")


def memory_limit() -> int:
    """All of the machine's memory but a reserve for the engine, the LLM's unloaded state and the OS (10%, at least
    2 GB): a training past it would have the OS's out-of-memory killer take something."""
    total = psutil.virtual_memory().total
    return int(total - max(0.10 * total, 2 * 2**30))


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_orphan(pid_file: Path) -> bool:
    """Kill a training left running by an engine that died (kill -9): True when one was found."""
    try:
        info = json.loads(pid_file.read_text())
        proc = psutil.Process(int(info["pid"]))
        alive = abs(proc.create_time() - float(info["create_time"])) < 1.0
    except (OSError, ValueError, KeyError, psutil.Error):
        alive = False
    if alive:
        kill_tree(int(info["pid"]))
    pid_file.unlink(missing_ok=True)
    return alive


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Runner:
    """Runs the processes of one training; ``stop()`` from another thread ends it as interrupted, ``end_early()``
    as early_stop."""

    def __init__(self, memory_limit_mb: float | None = None, log_limit_mb: float = 64) -> None:
        # the training tree's resident memory that ends it as oom before the OS's out-of-memory killer would
        # (None: all but a reserve of the machine's memory, see memory_limit)
        self.memory_limit = memory_limit_mb * 2**20 if memory_limit_mb else memory_limit()
        self._proc: subprocess.Popen[bytes] | None = None
        self._others: list[subprocess.Popen[bytes]] = []  # the scorer and its serving processes
        self._interrupted = threading.Event()
        self._early = ""  # why the training is ended early ('' while it is not)
        self.log_limit = int(log_limit_mb * 2**20)  # a process's output kept in its log, then only its last lines

    def end_early(self, reason: str) -> None:
        """End the training now because it is hopeless (another thread: the data server's judge)."""
        if self._early or self._interrupted.is_set():
            return
        self._early = reason or "stopped early"
        proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_tree(proc.pid)

    @property
    def ended_early(self) -> str:
        return self._early

    def stop(self) -> None:
        self._interrupted.set()
        for proc in [self._proc, *self._others]:
            if proc is not None and proc.poll() is None:
                kill_tree(proc.pid)

    def run(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        deadline_seconds: float,
        on_line: Callable[[str], None] | None = None,
        poll_interval: float = 0.2,
        pid_file: Path | None = None,
        pass_fds: tuple[int, ...] = (),
        append: bool = False,
        deadline_stretch: Callable[[], float] | None = None,
    ) -> RunResult:
        """Run ``argv`` to its end (or the deadline, or stop()): status ``crash`` (non-zero exit), ``oom``,
        ``timeout``, ``interrupted``, or ``exited`` (status 0: what it achieved is for the caller to judge)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        peak = 0
        with open(log_path, "ab" if append else "wb", buffering=0) as f:  # (unbuffered: nothing left to fail at close)
            log = _LogSink(f, self.log_limit)
            self._proc = proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds,
            )
            reader = threading.Thread(target=self._pump, args=(proc, log, on_line), daemon=True)
            reader.start()
            ps = psutil.Process(proc.pid)
            if pid_file is not None:
                tmp = pid_file.with_suffix(".tmp")
                try:
                    tmp.write_text(json.dumps({"pid": proc.pid, "create_time": ps.create_time()}))
                    os.replace(tmp, pid_file)
                except OSError:  # a full disk: the process must not outlive the error as an orphan
                    kill_tree(proc.pid)
                    proc.wait()
                    reader.join(timeout=5)
                    tmp.unlink(missing_ok=True)
                    raise
            timed_out = False
            stretch = 1.0
            too_big = ""
            while proc.poll() is None:
                rss = _tree_rss(ps)
                peak = max(peak, rss)
                too_big = self._memory_guard(rss)
                if too_big:
                    kill_tree(proc.pid)
                    break
                elapsed = time.monotonic() - started
                if elapsed > deadline_seconds:
                    stretch = max(1.0, deadline_stretch()) if deadline_stretch is not None else 1.0
                    if elapsed > deadline_seconds * stretch:
                        timed_out = True
                        kill_tree(proc.pid)
                        break
                if self._interrupted.is_set() or self._early:
                    kill_tree(proc.pid)
                    break
                time.sleep(poll_interval)
            proc.wait()
            kill_tree(proc.pid)  # leftovers in the group (a script that forked) go too
            reader.join(timeout=5)
            log.close()
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
        wall = time.monotonic() - started
        result = RunResult(status="crash", returncode=proc.returncode, wall_seconds=wall,
                           peak_memory_mb=peak / 2**20, log_path=log_path, tail=log_tail(log_path))
        if self._interrupted.is_set():
            result.status, result.reason = "interrupted", "stopped before the training finished"
        elif self._early:
            result.status, result.reason = "early_stop", self._early
        elif too_big:
            result.status, result.reason = "oom", too_big
        elif proc.returncode in _SIGKILLED and not timed_out:  # not ours: the kernel's OOM killer, usually
            result.status = "oom"
            result.reason = (f"killed by SIGKILL from outside the engine, most likely the kernel's out-of-memory killer "
                             f"(the training had reached {peak / 2**30:.1f} GB)")
        elif timed_out:
            stretched = f", stretched {stretch:.1f}x for the other processes' load" if stretch > 1.05 else ""
            result.status, result.reason = "timeout", (f"killed after {wall:.0f}s (budget + start-up + evaluation "
                                                       f"allowance{stretched})")
        else:
            result.status, result.reason = classify(proc.returncode, result.tail)
        return result

    def _memory_guard(self, rss: int) -> str:
        """Why the training must end now for its memory ('' while it may go on): over the limit, or the machine
        nearly out of memory with this training holding much of it."""
        vm = psutil.virtual_memory()
        low = vm.available < max(0.03 * vm.total, 512 * 2**20) and rss > 0.25 * vm.total
        if rss <= self.memory_limit and not low:
            return ""
        return (f"stopped at {rss / 2**30:.1f} GB of memory before the OS would kill it (the machine has "
                f"{vm.total / 2**30:.0f} GB, {vm.available / 2**30:.1f} GB were left; the limit is "
                f"{self.memory_limit / 2**30:.1f} GB): a smaller batch or model fits")

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Another process of this training (the scorer) that stop() must end too."""
        self._others.append(proc)
        if self._interrupted.is_set():
            kill_tree(proc.pid)

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes], log: _LogSink, on_line: Callable[[str], None] | None) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            log.write(raw)
            if on_line is not None:
                try:
                    on_line(raw.decode("utf-8", "replace").rstrip("\n"))
                except Exception:
                    pass


class _LogSink:
    """A process's output into its log file: the first ``limit`` bytes, then only the last lines (in memory, written
    at the end under a note of how many were left out): a script that prints without end must not fill the disk.
    A write that fails (a full disk) leaves a gap and never stops the draining of the pipe, which would hang the
    process; a training that fails for the full disk is the machine's fault (engine.diskspace)."""

    _LAST_LINES = 200

    def __init__(self, f: Any, limit: int) -> None:
        self._f = f
        self._limit = limit
        self._written = 0
        self._left_out = 0
        self._last: deque[bytes] = deque(maxlen=self._LAST_LINES)

    def write(self, raw: bytes) -> None:
        if self._last or self._written + len(raw) > self._limit:
            if len(self._last) == self._LAST_LINES:
                self._left_out += 1
            self._last.append(raw[:4096])
            return
        try:
            self._f.write(raw)
            self._written += len(raw)
        except OSError:
            pass

    def close(self) -> None:
        if not self._last:
            return
        note = (f"[harness: the output passed {self._limit / 2**20:.0f} MB: {self._left_out:,} lines are not kept "
                f"here; the last {len(self._last)} follow]\n").encode()
        try:
            self._f.write(note + b"".join(self._last))
        except OSError:
            pass


def classify(returncode: int | None, tail: str) -> tuple[str, str]:
    """The outcome of a process from its exit status and the end of its log (no metrics: they are not its to give)."""
    if returncode == 0:
        return "exited", ""
    if any(m in tail for m in _OOM_MARKERS) or returncode == -signal.SIGKILL and "Killed" in tail:
        return "oom", "ran out of memory"
    last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "")
    return "crash", f"exit status {returncode}: {last[:300]}"
