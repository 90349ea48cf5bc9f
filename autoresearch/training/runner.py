"""Run one training script as a subprocess, under a hard deadline, and classify the outcome.

The script runs in its own process group (session), with stdin from /dev/null and an environment without
credentials (``backends.training_env``). Its combined stdout/stderr is streamed line by line to a log file
(flushed as it comes) and to an optional callback. A watchdog samples the memory of the whole process tree
and kills the tree when the deadline passes. The result comes from the harness's metrics JSON, never from
parsing what the script printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

OUTCOMES = ("ok", "crash", "oom", "nan", "timeout", "invalid", "interrupted")
_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "CUDA out of memory", "out of memory", "[METAL] Command buffer execution failed: Insufficient Memory")


@dataclass
class RunResult:
    status: str  # one of OUTCOMES
    metrics: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0  # resident memory of the whole process tree, sampled
    log_path: Path | None = None
    reason: str = ""
    tail: str = ""  # last lines of the log (the traceback for a crash)

    @property
    def val_bpb(self) -> float | None:
        return self.metrics.get("val_bpb")


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


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process, its process group and every descendant (even ones that left the group)."""
    try:
        root = psutil.Process(pid)
        descendants = root.children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p in descendants:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass


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
    """Runs one training; ``stop()`` from another thread ends it as interrupted."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._interrupted = threading.Event()

    def stop(self) -> None:
        self._interrupted.set()
        if self._proc is not None and self._proc.poll() is None:
            kill_tree(self._proc.pid)

    def run(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        metrics_path: Path,
        deadline_seconds: float,
        on_line: Callable[[str], None] | None = None,
        poll_interval: float = 0.2,
        pid_file: Path | None = None,
    ) -> RunResult:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.unlink(missing_ok=True)
        started = time.monotonic()
        peak = 0
        with open(log_path, "wb") as log:
            self._proc = proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            reader = threading.Thread(target=self._pump, args=(proc, log, on_line), daemon=True)
            reader.start()
            ps = psutil.Process(proc.pid)
            if pid_file is not None:
                tmp = pid_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"pid": proc.pid, "create_time": ps.create_time()}))
                os.replace(tmp, pid_file)
            timed_out = False
            while proc.poll() is None:
                peak = max(peak, _tree_rss(ps))
                if time.monotonic() - started > deadline_seconds:
                    timed_out = True
                    kill_tree(proc.pid)
                    break
                if self._interrupted.is_set():
                    kill_tree(proc.pid)
                    break
                time.sleep(poll_interval)
            proc.wait()
            kill_tree(proc.pid)  # leftovers in the group (a script that forked) go too
            reader.join(timeout=5)
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
        wall = time.monotonic() - started
        result = RunResult(status="crash", returncode=proc.returncode, wall_seconds=wall,
                           peak_memory_mb=peak / 2**20, log_path=log_path, tail=log_tail(log_path))
        result.metrics = _read_metrics(metrics_path)
        if self._interrupted.is_set():
            result.status, result.reason = "interrupted", "stopped before the training finished"
        elif timed_out:
            result.status, result.reason = "timeout", f"killed after {deadline_seconds:.0f}s (budget + start-up + evaluation allowance)"
        else:
            result.status, result.reason = classify(proc.returncode, result.metrics, result.tail)
        return result

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes], log: Any, on_line: Callable[[str], None] | None) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            log.write(raw)
            log.flush()
            if on_line is not None:
                try:
                    on_line(raw.decode("utf-8", "replace").rstrip("\n"))
                except Exception:
                    pass


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def classify(returncode: int | None, metrics: dict[str, Any], tail: str) -> tuple[str, str]:
    """Outcome from the exit status, the harness's metrics and the log tail."""
    status = metrics.get("status")
    if status in ("nan", "invalid"):
        return status, metrics.get("reason") or status
    if returncode == 0 and status == "ok" and metrics.get("val_bpb") is not None:
        return "ok", ""
    if any(m in tail for m in _OOM_MARKERS) or returncode == -signal.SIGKILL and "Killed" in tail:
        return "oom", "ran out of memory"
    if returncode == 0 and not metrics:
        return "invalid", "the script exited without the harness writing a result (did it call H.finish(model)?)"
    last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "")
    return "crash", f"exit status {returncode}: {last[:300]}"
