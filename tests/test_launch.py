"""Launching the engine detached: a real `autoresearch run --headless` in its own session, output to engine.log."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from autoresearch.resources import template_path
from autoresearch.engine import control
from autoresearch.engine.launch import LaunchError, launch_detached
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.rundir import RunDir, RunLock
from autoresearch.harness.prepare import Prepared
from autoresearch.harness.session import HarnessConfig


def make_run(tmp_path: Path, data: Prepared, data_dir: str | None = None) -> RunDir:
    harness = HarnessConfig(data_dir=str(data.directory), seq_len=128, vocab_size=data.manifest.vocab_size,
                            time_budget=60, eval_tokens=2**12, device="cpu", max_steps=400, eval_batch_size=16,
                            test_tokens=2**11, progress_interval=0.5)
    config = {"backend": "torch", "dataset": "stdlib", "policy": "greedy", "seed": 0, "deadline_seconds": 120,
              "manifest_digest": data.manifest.digest, "data_dir": data_dir or str(data.directory),
              "profile": {"name": "test", "time_budget": 60, "device": "cpu"}, "hardware_summary": "test machine"}
    return RunDir.create(tmp_path / "runs" / "live", template_path("torch").read_text(), config,
                         dataclasses.asdict(harness))


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_launch_detached_runs_the_engine_in_its_own_session(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    pid = launch_detached(run)
    try:
        assert RunLock(run).is_held() and RunLock(run).holder()["pid"] == pid
        assert os.getsid(pid) != os.getsid(0)  # a new session: closing this terminal does not signal it
        events = Ledger(run.path, writable=False).events()
        assert any(e["event"] == "run_started" and e["pid"] == pid for e in events)
        log = (run.state / "engine.log").read_text()
        assert "launching: " in log and "starting new run live" in log  # what headless prints lands in engine.log
        wait_for(lambda: "[exp 0] baseline" in (run.state / "engine.log").read_text())
        with pytest.raises(LaunchError, match="already running"):
            launch_detached(run)
    finally:
        control.send(run.state, "stop-now")
        wait_for(lambda: not RunLock(run).is_held())
    log = (run.state / "engine.log").read_text()
    assert log.count("[exp 0] baseline") == 1  # each line once: the engine does not also write what it prints


def test_a_failed_start_is_reported_with_the_engines_message(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, data_dir=str(tmp_path / "gone"))
    with pytest.raises(LaunchError) as err:
        launch_detached(run, timeout=60)
    text = str(err.value)
    assert "stopped at once" in text and "the run's data is not usable" in text, text
    assert not RunLock(run).is_held()
