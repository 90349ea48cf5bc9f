"""Helpers for the app's tests: a recorded run directory, a frozen clock, a fixed machine load, and waiting."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable

import fixture_run
from autoresearch.engine.rundir import RunDir, RunLock
from autoresearch.engine.sysload import GpuLoad, Load
from autoresearch.tui.app import ResearchApp

NOW = fixture_run.START.timestamp() + 41.2 * fixture_run.STEP.total_seconds()  # a little after the last event


class FixedLoad:
    def sample(self) -> Load:
        return Load(cpu_percent=97.0, cores=26, memory_used_gb=61.5, memory_total_gb=251.0,
                    gpus=(GpuLoad("NVIDIA H100 80GB HBM3", 99.0, 60.2, 80.0),))


def utc() -> None:
    """Times on screen in UTC, whatever the machine's zone (snapshots must not depend on it)."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def make_app(runs_dir: Path, run: Path | None = None, **kwargs: Any) -> ResearchApp:
    utc()
    kwargs.setdefault("clock", lambda: NOW)
    kwargs.setdefault("load_sampler", FixedLoad)
    kwargs.setdefault("poll_interval", 0.05)
    return ResearchApp(runs_dir, run, debug=True, **kwargs)


class HeldLock:
    """Hold a run's lock as if an engine ran it (the app then shows the engine alive)."""

    def __init__(self, run: RunDir) -> None:
        self.lock = RunLock(run)

    def __enter__(self) -> "HeldLock":
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


async def until(pilot: Any, condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Pause the app until ``condition()`` is true (or fail after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def screen_text(app: ResearchApp) -> str:
    """What the terminal shows now, as plain text lines (the screen's compositor, as the driver would draw it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
