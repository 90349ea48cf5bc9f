"""A busy machine must not decide an experiment: CPU burners started during a real training make it contended;
it is recorded with the figure, left out of the noise estimate, and trained again once the machine is quiet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from autoresearch.engine.contention import ContentionMonitor
from autoresearch.harness.prepare import Prepared

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import engine_for, make_run  # noqa: E402

BURN = [sys.executable, "-c", "while True: pass"]


def _burner_elsewhere() -> int:
    """A CPU burner that is not this process's child (an engine in this process counts its children as its own):
    started through a shell that exits at once, so init adopts it. Its pid."""
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _events(path: Path) -> list[dict]:
    f = path / ".autoresearch" / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def test_the_monitor_sees_other_processes_and_not_its_own_children() -> None:
    mine = ContentionMonitor().start()
    child = subprocess.Popen(BURN)  # a child of this process: ours, not "another process"
    time.sleep(1.5)
    child.kill()
    child.wait()
    assert mine.stop().share < 0.25
    root = subprocess.Popen(["sleep", "30"])  # a tree that does not hold the burner below: it is another process
    other = subprocess.Popen(BURN, start_new_session=True)
    try:
        watched = ContentionMonitor(root=root.pid).start()
        time.sleep(1.5)
        seen = watched.stop()
    finally:
        for p in (other, root):
            p.kill()
            p.wait()
    assert seen.others_cores > 0.6 and "python" in seen.words()


def test_a_contended_training_is_trained_again_when_the_machine_is_quiet(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, max_steps=40)
    burners = [_burner_elsewhere() for _ in range(2)]
    stop_burning = threading.Event()

    def end_the_burners() -> None:  # once the engine has called the first training contended
        while not stop_burning.is_set():
            if any(e["event"] == "training_finished" and e.get("outcome") == "contended" for e in _events(run.path)):
                break
            time.sleep(0.2)
        for pid in burners:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    watcher = threading.Thread(target=end_the_burners, daemon=True)
    watcher.start()
    try:
        reason = engine_for(run, [], max_experiments=1, quiet_window_seconds=1.0).run()
    finally:
        stop_burning.set()
        watcher.join(timeout=10)
    assert reason == "1 experiment(s) done"
    events = _events(run.path)
    trainings = [e for e in events if e["event"] == "training_finished"]
    assert trainings[0]["outcome"] == "contended" and trainings[0]["others_cpu"] > 0.25
    assert "other processes used" in trainings[0]["reason"] and "python" in trainings[0]["reason"]
    ok = [t for t in trainings if t["outcome"] == "ok"]
    assert len(ok) == 2 and ok[0]["seed"] == trainings[0]["seed"]  # the same seed, trained again
    assert all(t["others_cpu"] < 0.25 for t in ok)
    assert any(e["event"] == "phase" and e["phase"] == "waiting_for_quiet" for e in events)
    (noise,) = [e for e in events if e["event"] == "noise_estimate"]
    vals = [t["val_bpb"] for t in ok]
    assert abs(noise["sigma"] - abs(vals[0] - vals[1]) / 2 ** 0.5) < 1e-6  # from the two quiet trainings only
    assert (run.state / "logs" / "0000-rerun1.log").exists()
