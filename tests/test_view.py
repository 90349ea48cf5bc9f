"""The read model over a real run (real git, real CPU trainings, the scripted agent as the loop's test double),
and over a hand-written ledger for the states a short run does not reach."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from autoresearch.engine import control
from autoresearch.engine.events import (ControlTaken, Decision, EventError, ExperimentStarted, Paused, Phase, RunStarted,
                                        Stopped, TrainingFinished, TrainingStarted, UnknownEvent, parse, validate_dict)
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.live import read_live
from autoresearch.engine.loop import Engine, EngineOptions
from autoresearch.engine.rundir import RunDir, RunLock
from autoresearch.engine.status import run_status
from autoresearch.engine.view import RunView, parse_ts, quick_rows
from autoresearch.harness.prepare import Prepared

sys.path.insert(0, str(Path(__file__).parent))
from scripted_agent import ScriptedAgent  # noqa: E402
from test_engine import FIX_LRS, make_run  # noqa: E402


def test_events_round_trip_and_unknown_fields_are_kept() -> None:
    ev = TrainingStarted(index=3, attempt=1, seed=1, log="logs/0003-1.log", purpose="confirm", ts="2026-03-08T22:00:00.000Z")
    raw = ev.to_dict()
    assert raw["event"] == "training_started" and raw["purpose"] == "confirm"
    assert parse(raw) == ev
    newer = dict(raw, gpu_seconds=12.5)  # a field a later version writes
    back = parse(newer)
    assert isinstance(back, TrainingStarted) and back.extra == {"gpu_seconds": 12.5} and back.to_dict() == newer
    unknown = parse({"event": "from_the_future", "x": 1, "ts": "2026-03-08T22:00:00.000Z"})
    assert isinstance(unknown, UnknownEvent) and unknown.type == "from_the_future" and unknown.extra == {"x": 1}
    with pytest.raises(EventError):
        validate_dict({"event": "training_started", "index": -1})
    with pytest.raises(EventError):
        validate_dict(Phase(phase="daydreaming").to_dict())
    validate_dict({"event": "anything_else"})  # other types are stored, not refused


def test_view_of_a_real_run(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, max_steps=60)
    view = RunView(run)
    seen_training: list[dict] = []
    engine = Engine(run, ScriptedAgent([FIX_LRS]), EngineOptions(max_experiments=2, poll_interval=0.1), log=lambda s: None)

    def watch() -> None:  # a client polling while the engine works (another thread here, any process in life)
        while thread.is_alive():
            state = view.poll().state
            if state.current is not None and state.current.progress:
                seen_training.append(dict(state.current.progress, index=state.current.index, phase=state.phase))
            threading.Event().wait(0.2)

    thread = threading.Thread(target=engine.run)
    control.send(run.state, "resume")  # sent before the engine runs: taken, and ignored (not paused)
    thread.start()
    watcher = threading.Thread(target=watch)
    watcher.start()
    thread.join(timeout=600)
    watcher.join(timeout=10)
    update = view.poll()
    st = update.state
    assert not st.engine.alive and st.phase == "stopped" and st.engine.stop_reason == "2 experiment(s) done"
    assert st.best is not None and st.baseline is not None and st.noise_sigma is not None
    assert st.counts.get("keep", 0) >= 1 and st.experiments == 2 and st.current is None
    assert st.experiments_per_hour(st.engine.dead_since or 0) > 0
    assert list(st.taken.values()) == ["ignored: not paused"]
    events = Ledger(run.path).events()
    kinds = [e["event"] for e in events]
    started = [e for e in events if e["event"] == "training_started"]
    assert [e["purpose"] for e in started][:2] == ["baseline", "baseline"] and started[0]["log"] == "logs/0000.log"
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases[0] == "starting" and "proposing" in phases and "evaluating" in phases
    assert kinds.index("control") < kinds.index("experiment_started")
    assert seen_training and all(0 <= s["progress"] <= 1 for s in seen_training)  # live.json, as the engine trained
    engine_log = (run.state / "engine.log").read_text()
    assert "[exp 0] baseline" in engine_log and "stopped: 2 experiment(s) done" in engine_log
    assert read_live(run.state).get("training") is None  # nothing in flight any more
    assert [r.index for r in quick_rows(run)] == [0, 1]  # results.tsv, for a long run's first paint
    report = run_status(run)
    assert report["state"] == "stopped" and report["noise_sigma"] == st.noise_sigma


def test_view_states_a_short_run_does_not_reach(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "print('hi')\n", {"backend": "torch", "profile": {"time_budget": 300}}, {})
    ledger = Ledger(run.path)
    lock = RunLock(run)
    lock.acquire()
    try:
        ledger.append_many([
            RunStarted(pid=1, host="h", ts="2026-03-08T22:00:00.000Z"),
            ExperimentStarted(index=0, kind="baseline", commit=run.head(), ts="2026-03-08T22:00:01.000Z"),
            TrainingStarted(index=0, attempt=0, seed=0, log="logs/0000.log", purpose="baseline", budget_seconds=300,
                            ts="2026-03-08T22:00:02.000Z"),
        ])
        view = RunView(run, clock=lambda: parse_ts("2026-03-08T22:01:02.000Z") or 0)
        st = view.poll().state
        assert st.engine.alive and st.phase == "training" and st.current is not None and st.current.purpose == "baseline"
        assert view.remaining_seconds() == pytest.approx(240)  # no progress line yet: the budget's clock
        ledger.append_many([
            TrainingFinished(index=0, seed=0, outcome="ok", val_bpb=2.5, ts="2026-03-08T22:05:30.000Z"),
            Decision(index=0, status="keep", val_bpb=2.5, reason="baseline", ts="2026-03-08T22:05:31.000Z"),
            ControlTaken(command="pause", id="abc", outcome="done", ts="2026-03-08T22:05:32.000Z"),
            Paused(reason="paused by the user", ts="2026-03-08T22:05:32.000Z"),
            Phase(phase="paused", ts="2026-03-08T22:05:33.000Z"),
        ])
        update = view.poll()
        st = update.state
        assert update.changed == {0} and st.paused and st.status == "paused" and st.phase == "paused"
        assert st.taken == {"abc": "done"} and st.best is not None and st.best.val_bpb == 2.5
        ledger.append(Stopped(reason="stopped by the user after the experiment", ts="2026-03-08T22:06:00.000Z"))
    finally:
        lock.release()
    st = view.poll().state
    assert not st.engine.alive and st.status == "stopped"
    assert st.engine.dead_since == parse_ts("2026-03-08T22:06:00.000Z")
    (run.state / "events.jsonl").write_text("")  # replaced behind the view's back: it starts over
    assert view.poll().reset
