"""A busy machine must not decide an experiment: CPU burners started during a real training make it contended;
it is recorded with the figure, left out of the noise estimate, and trained again once the machine is quiet."""

from __future__ import annotations

import json
import os
import re
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


def test_a_busy_machine_stretches_the_training_deadline(tmp_path: Path) -> None:
    from autoresearch.training.runner import Runner

    slow_start = [sys.executable, "-c", "import time; time.sleep(4)"]  # a start-up that the load made slow
    quiet = ContentionMonitor().start()
    r = Runner().run(slow_start, cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "a.log", deadline_seconds=2,
                     deadline_stretch=quiet.stretch)
    quiet.stop()
    assert r.status == "timeout" and "stretched" not in r.reason  # a quiet machine: the deadline as it is
    burners = [_burner_elsewhere() for _ in range(os.cpu_count() or 1)]
    try:
        busy = ContentionMonitor().start()
        r = Runner().run(slow_start, cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "b.log",
                         deadline_seconds=2, deadline_stretch=busy.stretch)
        load = busy.load_so_far()
        busy.stop()
    finally:
        for pid in burners:
            os.kill(pid, signal.SIGKILL)
    assert r.status == "exited", r.reason  # the others took the machine: it was given the time they took
    assert load > 0.5


def _steps(log: Path) -> int:
    """The latest step a training's log reports (its progress lines)."""
    found = re.findall(r"^step (\d+) ", log.read_text(), flags=re.M)
    return int(found[-1]) if found else 0


def test_a_training_slower_than_its_script_was_before_is_trained_again(tmp_path: Path, stdlib_small: Prepared) -> None:
    """The second signal, for what the CPU figure cannot see: the baseline's second seed is held still for a while
    (SIGSTOP, as a machine that is busy elsewhere or asleep does to it): no process took the CPU, but it trained far
    slower than its first seed. It is not used: trained again."""
    run = make_run(tmp_path, stdlib_small, max_steps=30)
    held = threading.Event()

    def hold_the_second_seed() -> None:
        pid_file = run.state / "training.pid"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            starts = [e for e in _events(run.path) if e["event"] == "training_started"]
            log = run.state / starts[-1]["log"] if starts else None
            if len(starts) == 2 and pid_file.exists() and log is not None and log.exists() and _steps(log) >= 5:
                pgid = os.getpgid(json.loads(pid_file.read_text())["pid"])
                os.killpg(pgid, signal.SIGSTOP)
                time.sleep(8)
                os.killpg(pgid, signal.SIGCONT)
                held.set()
                return
            time.sleep(0.05)
    threading.Thread(target=hold_the_second_seed, daemon=True).start()
    assert engine_for(run, [], max_experiments=1, quiet_window_seconds=0.5).run() == "1 experiment(s) done"
    assert held.is_set()
    finished = [e for e in _events(run.path) if e["event"] == "training_finished"]
    assert [e["outcome"] for e in finished] == ["ok", "contended", "ok"], [(e["outcome"], e["reason"]) for e in finished]
    assert "of the same script's earlier training" in finished[1]["reason"]
    assert finished[1]["others_cpu"] < 0.25  # the CPU figure alone would have used it


def test_slower_than_before() -> None:
    from autoresearch.engine.contention import slower_than_before

    assert slower_than_before(9000, []) == "" and slower_than_before(None, [10000]) == ""
    assert slower_than_before(7500, [10000, 10400]) == ""  # within the usual spread
    words = slower_than_before(6000, [10000, 10400, 9800])
    assert words == "trained at 6,000 tok/s, 0.60x of the same script's 3 earlier trainings (10,000 tok/s)"
    assert "earlier training (" in slower_than_before(1000, [10000])


PMON = """\
# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command
# Idx           #    C/G      %      %      %      %      %      %    name
    0       {ours}     C     55     20      -      -      -      -    python
    0       4321     C     70     31      -      -      -      -    game.exe
    1          -     -      -      -      -      -      -      -    -
"""


def test_other_processes_on_the_nvidia_gpu_make_a_training_contended(tmp_path: Path, monkeypatch) -> None:
    """No NVIDIA GPU here: a stand-in nvidia-smi on PATH prints what `nvidia-smi pmon -c 1 -s u` prints on one,
    with this process (ours) and a game (another process) on GPU 0."""
    from autoresearch.engine.gpuload import parse_pmon

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncat <<'OUT'\n" + PMON.format(ours=os.getpid()) + "OUT\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert [(p.pid, p.sm_percent, p.name) for p in parse_pmon(PMON.format(ours=7))] == [(7, 55.0, "python"),
                                                                                      (4321, 70.0, "game.exe")]
    monitor = ContentionMonitor(gpu_interval=0.2).start()
    time.sleep(1.0)
    seen = monitor.stop()
    assert abs(seen.gpu_share - 0.7) < 1e-9  # the game's share, not ours
    assert seen.busier(0.25)
    from autoresearch.engine.contention import Contention
    quiet_cpu = Contention(others_cores=0.0, cores=2, seconds=1.0, gpu_share=seen.gpu_share)
    assert quiet_cpu.busier(0.25) and quiet_cpu.share == 0  # the CPU figure alone would not have seen it
    assert "other processes used 70% of the GPU (game.exe (pid 4321, GPU 0) 70%)" in seen.words()
