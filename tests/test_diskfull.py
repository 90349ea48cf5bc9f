"""A full disk is the machine's fault: for real, on a small tmpfs that the tests fill up (needs root to mount one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from autoresearch.engine.diskspace import gb, training_disk_fault
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.loop import Engine, EngineOptions
from autoresearch.engine.events import NoteAdded
from autoresearch.harness.prepare import Prepared
from autoresearch.training.runner import Runner

sys.path.insert(0, str(Path(__file__).parent))
from scripted_agent import ScriptedAgent  # noqa: E402
from test_engine import FIX_LRS, make_run  # noqa: E402

FLOOR_GB = 1 / 1024  # 1 MB: the tmpfs below is 60 MB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a small filesystem to fill needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full (what a backup or a download does to a night)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(1 << 16))
        except OSError:
            pass
    return filler


def events(run_path: Path) -> list[dict]:
    return Ledger(run_path).events()


def when(predicate, then, timeout: float = 300.0) -> threading.Thread:  # type: ignore[no-untyped-def]
    def watch() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                then()
                return
            time.sleep(0.05)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def options(**kw: object) -> EngineOptions:
    return EngineOptions(disk_floor_gb=FLOOR_GB, disk_poll_seconds=0.2, poll_interval=0.1, baseline_seeds=1, **kw)


def test_a_disk_that_fills_during_a_training_costs_the_change_nothing(small_disk: Path, stdlib_small: Prepared) -> None:
    run = make_run(small_disk, stdlib_small)
    lines: list[str] = []
    agent = ScriptedAgent([FIX_LRS])
    engine = Engine(run, agent, options(max_experiments=2), log=lines.append)
    filled: list[Path] = []

    def exp1_training() -> bool:
        try:
            return any(e["event"] == "training_started" and e["index"] == 1 for e in events(run.path))
        except Exception:
            return False
    when(exp1_training, lambda: filled.append(fill(small_disk)))
    freed = when(lambda: any("trained again once there is space" in line for line in lines),
                 lambda: (time.sleep(0.5), filled[0].unlink()))
    assert engine.run() == "2 experiment(s) done"
    freed.join(timeout=5)
    assert filled and not filled[0].exists()

    exp = Ledger(run.path).experiments()[1]
    assert exp.status == "keep"  # the change was judged on trainings the disk did not spoil
    outcomes = [t.outcome for t in exp.trainings]
    assert outcomes[0] == "disk_full" and set(outcomes[1:]) == {"ok"}, outcomes
    # (its words in the traceback, or, when the log could not even hold them, the disk found below the floor after it)
    assert "the disk filled up during the training" in exp.trainings[0].reason or \
        "the training failed with the disk below the floor" in exp.trainings[0].reason
    evs = events(run.path)
    assert not any(e["event"] == "experiment_repaired" for e in evs) and agent.repairs == []  # not the change's fault
    kinds = [e["event"] for e in evs]
    assert "resumed" in kinds  # waited for the space (the pause itself may not have found room in the ledger)
    assert run.head() == exp.commit and run.foreign_changes() == []
    assert any("the machine's fault, not the change's" in line for line in lines)


class _FillsTheDiskFirst(ScriptedAgent):
    """Its first proposal comes back while something else fills the disk: the commit cannot be written."""

    def __init__(self, disk: Path, edits: list[dict]) -> None:
        super().__init__(edits)
        self.disk = disk
        self.filler: Path | None = None

    def propose(self, ctx):  # type: ignore[no-untyped-def]
        proposal = super().propose(ctx)
        if self.calls == 1:
            self.filler = fill(self.disk)
        return proposal


def test_a_disk_that_fills_while_the_engine_writes_is_waited_out(small_disk: Path, stdlib_small: Prepared) -> None:
    run = make_run(small_disk, stdlib_small)
    lines: list[str] = []
    agent = _FillsTheDiskFirst(small_disk, [FIX_LRS])
    engine = Engine(run, agent, options(max_experiments=2), log=lines.append)
    when(lambda: any(line.startswith("the disk is full") for line in lines),
         lambda: (time.sleep(0.5), agent.filler.unlink()))  # type: ignore[union-attr]
    assert engine.run() == "2 experiment(s) done"  # not "unexpected error: OSError: [Errno 28]"
    said = next(line for line in lines if line.startswith("the disk is full"))
    assert "waiting for space" in said and "nothing is lost" in said
    exps = Ledger(run.path).experiments()
    assert [e.status for e in exps if e.status != "interrupted"] == ["keep", "keep"]  # the proposal was asked again
    assert run.head() == exps[-1].commit and run.foreign_changes() == []
    Ledger(run.path).append(NoteAdded(id="n", text="the ledger is whole"))  # no torn line was left by the failed writes


def test_a_failed_append_leaves_no_torn_line(small_disk: Path) -> None:
    ledger = Ledger(small_disk / "run")
    ledger.append(NoteAdded(id="a", text="before"))
    size = ledger.path.stat().st_size
    filler = fill(small_disk)
    with pytest.raises(OSError):
        ledger.append(NoteAdded(id="b", text="x" * 200_000))  # larger than any page left
    assert ledger.path.stat().st_size == size
    filler.unlink()
    ledger.append(NoteAdded(id="c", text="after"))
    assert [e["text"] for e in Ledger(small_disk / "run").events() if e["event"] == "note_added"] == ["before", "after"]


def test_a_chatty_training_cannot_fill_the_disk_and_its_last_lines_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    script = "import sys\nfor i in range(30000):\n    print(f'line {i} ' + 'x' * 100)\nprint('the end')\nsys.exit(3)\n"
    r = Runner(log_limit_mb=1).run([sys.executable, "-c", script], cwd=tmp_path, env=dict(os.environ),
                                   log_path=log, deadline_seconds=60)
    size = log.stat().st_size
    assert 2**20 <= size < 2**20 + 200 * 4200  # the first MB, then at most the last lines
    text = log.read_text()
    assert "[harness: the output passed 1 MB" in text and "the last 200 follow]" in text
    assert r.status == "crash" and "the end" in r.tail  # the end of the output is still where the reason is read
    assert json.dumps(r.reason)


def test_whose_fault_a_full_disk_is() -> None:
    mb = 2**20
    machine = training_disk_fault("crash", "OSError: [Errno 28] No space left on device", free_before=900 * mb,
                                  free_now=0, floor=1024 * mb, wrote=5 * mb)
    assert machine is not None and machine.machine and "5 MB" in machine.reason
    change = training_disk_fault("crash", "safetensors: I/O error: No space left on device (os error 28)",
                                 free_before=900 * mb, free_now=0, floor=mb, wrote=880 * mb)
    assert change is not None and not change.machine and "the training itself wrote 880 MB" in change.reason
    low = training_disk_fault("invalid", "no weights", free_before=900 * mb, free_now=10 * mb, floor=1024 * mb, wrote=0)
    assert low is not None and low.machine and low.reason.startswith("the training failed with the disk below the floor (10 MB free now")
    assert training_disk_fault("crash", "NameError: x", free_before=9 * 2**30, free_now=9 * 2**30, floor=2**30,
                               wrote=0) is None
    assert training_disk_fault("ok", "No space left on device", free_before=0, free_now=0, floor=2**30, wrote=0) is None
    assert gb(3 * 2**30) == "3.00 GB" and gb(5 * mb) == "5 MB"
