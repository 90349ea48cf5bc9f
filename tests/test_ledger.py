"""The run ledger: durable appends, torn-write repair, reduction to experiments, results.tsv."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from autoresearch.engine import ledger as ledger_mod
from autoresearch.engine.ledger import Ledger, LedgerCorruptError, LedgerError
from autoresearch.engine.results import RESULTS_HEADER, read_results_tsv

UPSTREAM_TSV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "upstream-mar8-results.tsv"


def _metrics(steps: int = 950, seconds: float = 300.2, mem: float = 45056.0) -> dict:
    return {"training_seconds": seconds, "peak_memory_mb": mem, "num_steps": steps, "total_tokens": 499_000_000,
            "mfu_percent": 39.8}


def _started(index: int, kind: str = "agent", commit: str | None = None, description: str = "", parent: str = "p0"):
    return {"event": "experiment_started", "index": index, "kind": kind, "parent": parent,
            "commit": commit or f"c{index:06d}", "description": description or f"change {index}",
            "script_sha256": "ab" * 32, "manifest_digest": "cd" * 32}


def _trained(index: int, seed: int, outcome: str = "ok", val: float | None = 0.99, **metrics_kw):
    return {"event": "training_finished", "index": index, "seed": seed, "outcome": outcome, "val_bpb": val,
            "metrics": _metrics(**metrics_kw) if outcome == "ok" else {}, "peak_memory_mb": 46000.0,
            "wall_seconds": 331.5, "log": f"logs/{index:04d}.log", "reason": "" if outcome == "ok" else "boom"}


def _decided(index: int, status: str, val: float | None, delta: float | None, **kw):
    return {"event": "decision", "index": index, "status": status, "val_bpb": val, "delta": delta,
            "reason": f"{status} because", **kw}


def _scenario(led: Ledger) -> None:
    """A baseline with 2 seeds, a kept change, a discarded one (2 runs), a crash, an interrupted one, an open one."""
    led.append({"event": "run_started", "pid": os.getpid(), "host": "box", "version": "0.1.0", "resumed": False})
    led.append(_started(0, "baseline", commit="aaaaaaa", description="baseline"))
    led.append(_trained(0, 1, val=0.9980, mem=45056.0))
    led.append(_trained(0, 2, val=0.9978, mem=45158.4, steps=960, seconds=300.4))
    led.append({"event": "noise_estimate", "sigma": 0.000141, "dof": 1, "source": "baseline x2"})
    led.append(_decided(0, "keep", 0.9979, None))
    led.append(_started(1, commit="bbbbbbb", description="halve batch 524K to 262K", parent="aaaaaaa"))
    led.append(_trained(1, 1, val=0.9861))
    led.append(_trained(1, 2, val=0.9859))
    led.append(_decided(1, "keep", 0.9860, 0.9860 - 0.9979, test_bpb=0.9871))
    led.append(_started(2, commit="ccccccc", description="add 5%\twarmup\nsecond line", parent="bbbbbbb"))
    led.append(_trained(2, 1, val=0.9850))
    led.append(_trained(2, 2, val=0.9880))
    led.append(_decided(2, "discard", 0.9865, 0.9865 - 0.9860))
    led.append(_started(3, commit="ddddddd", description="batch 131K", parent="bbbbbbb"))
    led.append(_trained(3, 1, outcome="crash", val=None))
    led.append(_decided(3, "crash", None, None))
    led.append({"event": "control", "command": "pause"})
    led.append({"event": "paused", "reason": "user"})
    led.append({"event": "resumed"})
    led.append(_started(4, commit="eeeeeee", description="deeper", parent="bbbbbbb"))
    led.append({"event": "experiment_interrupted", "index": 4, "reason": "engine restarted"})
    led.append({"event": "something_new", "x": 1})
    led.append(_started(5, commit="fffffff", description="wider", parent="bbbbbbb"))
    led.append(_trained(5, 1, val=0.9870))


def test_append_and_reload_round_trip(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    stored = led.append({"event": "run_started", "pid": 1, "host": "h", "version": "0.1.0", "resumed": False})
    assert stored["event"] == "run_started"
    ts = datetime.fromisoformat(stored["ts"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None and ts.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - ts).total_seconds()) < 60
    _scenario(led)
    assert (tmp_path / ".autoresearch" / "events.jsonl").is_file()
    again = Ledger(tmp_path)
    assert again.events() == led.events()
    assert len(again) == len(led.events()) == 26
    assert [e.status for e in again.experiments()] == [e.status for e in led.experiments()]
    # every line is one JSON object, newline-terminated
    raw = led.path.read_bytes()
    assert raw.endswith(b"\n")
    assert all(isinstance(json.loads(line), dict) for line in raw.splitlines())
    led.reload()
    assert led.events() == again.events()


def test_caller_timestamp_kept_and_non_finite_floats_stored_as_null(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    ev = led.append({"event": "x", "ts": "2026-03-08T00:00:00.000Z", "v": float("nan"),
                     "metrics": {"mfu": float("inf"), "ok": 1.5}})
    assert ev["ts"] == "2026-03-08T00:00:00.000Z"
    assert ev["v"] is None and ev["metrics"] == {"mfu": None, "ok": 1.5}
    assert b"NaN" not in led.path.read_bytes() and b"Infinity" not in led.path.read_bytes()
    assert Ledger(tmp_path).events() == [ev]


def test_append_validates_the_contract(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    with pytest.raises(ValueError):
        led.append({"index": 0})
    with pytest.raises(ValueError):
        led.append({"event": "decision", "index": "1", "status": "keep"})
    with pytest.raises(ValueError):
        led.append({"event": "decision", "index": 1, "status": "maybe"})
    with pytest.raises(ValueError):
        led.append({"event": "training_finished", "index": 1, "outcome": "exploded"})
    with pytest.raises(ValueError):
        led.append({"event": "experiment_started", "index": 1, "kind": "human"})
    assert not led.path.exists()  # nothing written by failed validation
    with pytest.raises(LedgerError):
        Ledger(tmp_path, writable=False).append({"event": "x"})


def test_each_append_is_fsynced_and_the_directory_on_creation(tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        calls.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(ledger_mod.os, "fsync", spy)
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    file_ino = led.path.stat().st_ino
    dir_ino = led.dir.stat().st_ino
    assert calls.count(file_ino) == 1 and calls.count(dir_ino) == 1  # file, then its new directory entry
    calls.clear()
    led.append({"event": "b"})
    led.append({"event": "c"})
    assert calls == [file_ino, file_ino]  # one fsync per event, no directory fsync once the file exists


def test_torn_last_line_is_repaired_and_kept(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a", "n": 1})
    led.append({"event": "b", "n": 2})
    good = led.path.read_bytes()
    torn = b'{"event":"decision","index":3,"sta'
    with open(led.path, "ab") as f:
        f.write(torn)
    fresh = Ledger(tmp_path)
    assert [e["event"] for e in fresh.events()] == ["a", "b"]
    assert led.path.read_bytes() == good  # truncated to the last good newline
    corrupt = sorted(led.dir.glob("events.jsonl.corrupt-*"))
    assert len(corrupt) == 1 and corrupt[0].read_bytes() == torn
    assert fresh.repaired == corrupt
    fresh.append({"event": "c"})
    assert [e["event"] for e in Ledger(tmp_path).events()] == ["a", "b", "c"]


def test_zero_filled_last_line_is_repaired(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    with open(led.path, "ab") as f:
        f.write(b"\x00" * 40 + b"\n")  # what some file systems leave after a power loss
    fresh = Ledger(tmp_path)
    assert [e["event"] for e in fresh.events()] == ["a"]
    corrupt = list(led.dir.glob("events.jsonl.corrupt-*"))
    assert len(corrupt) == 1 and corrupt[0].read_bytes() == b"\x00" * 40 + b"\n"


def test_complete_last_event_without_newline_is_kept(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    with open(led.path, "ab") as f:
        f.write(b'{"event":"b","ts":"2026-03-08T00:00:00.000Z"}')  # e.g. hand-edited, newline stripped
    fresh = Ledger(tmp_path)
    assert [e["event"] for e in fresh.events()] == ["a", "b"]
    assert led.path.read_bytes().endswith(b"}\n")
    assert not list(led.dir.glob("events.jsonl.corrupt-*"))
    fresh.append({"event": "c"})
    assert [e["event"] for e in Ledger(tmp_path).events()] == ["a", "b", "c"]


def test_a_writable_load_does_not_cut_a_write_in_flight(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    with open(led.path, "ab") as f:
        f.write(b'{"event":"b",')  # another process is writing this line right now

    def finish() -> None:
        time.sleep(0.02)
        with open(led.path, "ab") as f:
            f.write(b'"x":1}\n')

    t = threading.Thread(target=finish)
    t.start()
    try:
        events = Ledger(tmp_path).events()  # writable: sees a bad tail, waits for it to settle
    finally:
        t.join()
    assert [e["event"] for e in events] == ["a", "b"]
    assert not list(led.dir.glob("events.jsonl.corrupt-*"))


def test_garbage_in_the_middle_raises(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    with open(led.path, "ab") as f:
        f.write(b"this is not json\n")
    led2 = Ledger(tmp_path)
    led2.append({"event": "b"})  # repairs the (then last) bad line, so write the damage again below
    lines = led.path.read_bytes().splitlines(keepends=True)
    led.path.write_bytes(lines[0] + b"{broken\n" + lines[1])
    before = led.path.read_bytes()
    with pytest.raises(LedgerCorruptError, match=r"line 2 .*not a valid JSON event.*line 3"):
        Ledger(tmp_path).events()
    with pytest.raises(LedgerCorruptError):
        Ledger(tmp_path, writable=False).events()
    assert led.path.read_bytes() == before  # nothing modified, nothing dropped


def test_read_only_ledger_never_modifies_and_waits_for_a_partial_line(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append({"event": "a"})
    with open(led.path, "ab") as f:
        f.write(b'{"event":"b","x":')  # the writer is in the middle of a write
    before = led.path.read_bytes()
    reader = Ledger(tmp_path, writable=False)
    assert [e["event"] for e in reader.events()] == ["a"]
    assert reader.pending_bytes == len(b'{"event":"b","x":')
    assert led.path.read_bytes() == before
    assert not list(led.dir.glob("events.jsonl.corrupt-*"))
    with open(led.path, "ab") as f:
        f.write(b"1}\n")  # the write completes
    assert [e["event"] for e in reader.tail_new_events()] == ["b"]
    assert reader.pending_bytes == 0


def test_reduction_to_experiments(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    _scenario(led)
    exps = led.experiments()
    assert [e.index for e in exps] == [0, 1, 2, 3, 4, 5]
    assert [e.status for e in exps] == ["keep", "keep", "discard", "crash", "interrupted", None]
    base, kept, disc, crash, intr, open_ = exps

    assert base.kind == "baseline" and base.commit == "aaaaaaa" and base.description == "baseline"
    assert [r.seed for r in base.trainings] == [1, 2] and base.ok_values == [0.9980, 0.9978]
    assert base.val_bpb == pytest.approx(0.9979) and base.delta is None
    assert base.memory_gb == pytest.approx(45158.4 / 1024)  # max over runs, from the harness metrics
    assert base.training_seconds == pytest.approx(300.3) and base.num_steps == 955
    assert base.script_sha256 == "ab" * 32 and base.manifest_digest == "cd" * 32
    assert base.started and base.finished and base.started <= base.finished

    assert kept.parent == "aaaaaaa" and kept.val_bpb == pytest.approx(0.986)
    assert kept.delta == pytest.approx(-0.0119) and kept.test_bpb == pytest.approx(0.9871)
    assert disc.val_bpb == pytest.approx(0.9865) and len(disc.trainings) == 2 and disc.reason == "discard because"
    assert crash.val_bpb is None and crash.trainings[0].outcome == "crash" and not crash.ok_values
    assert crash.memory_gb == pytest.approx(46000.0 / 1024)  # no harness metrics: the process tree's peak
    assert intr.reason == "engine restarted" and intr.finished and not intr.trainings
    assert open_.is_open and open_.finished is None and open_.val_bpb == pytest.approx(0.987)  # running mean

    assert led.open_experiment() is open_ and led.open_experiments() == [open_]
    assert led.best() is kept
    assert led.next_index() == 6
    assert led.last("noise_estimate")["sigma"] == 0.000141
    assert led.last("paused")["reason"] == "user"
    assert led.last("nope") is None
    assert led.experiment(2) is disc and led.experiment(99) is None

    led.append({"event": "experiment_interrupted", "index": 5, "reason": "resume"})
    assert led.open_experiment() is None and open_.status == "interrupted"


def test_best_is_the_baseline_until_something_is_kept(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    assert led.best() is None and led.open_experiment() is None and led.next_index() == 0
    assert led.experiments() == [] and led.events() == []
    led.append(_started(0, "baseline"))
    assert led.best() is None and led.open_experiment().index == 0
    led.append(_trained(0, 1, val=1.0))
    led.append(_decided(0, "keep", 1.0, None))
    led.append(_started(1))
    led.append(_trained(1, 1, val=1.1))
    led.append(_decided(1, "discard", 1.1, 0.1))
    assert led.best().index == 0


def test_results_tsv_exact_format(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    _scenario(led)
    path = led.write_results_tsv()
    assert path == tmp_path / ".autoresearch" / "results.tsv"
    text = path.read_text()
    assert text == (
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\tindex\tdelta\tseeds\ttraining_seconds\ttest_bpb\n"
        "aaaaaaa\t0.997900\t44.1\tkeep\tbaseline\t0\t\t2\t300.3\t\n"
        "bbbbbbb\t0.986000\t44.0\tkeep\thalve batch 524K to 262K\t1\t-0.011900\t2\t300.2\t0.987100\n"
        "ccccccc\t0.986500\t44.0\tdiscard\tadd 5% warmup second line\t2\t+0.000500\t2\t300.2\t\n"
        "ddddddd\t0.000000\t44.9\tcrash\tbatch 131K\t3\t\t1\t\t\n"
        "eeeeeee\t0.000000\t0.0\tinterrupted\tdeeper\t4\t\t0\t\t\n"
    )
    assert text.splitlines()[0] == RESULTS_HEADER
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # temp file renamed away

    rows = read_results_tsv(path)
    assert [r.commit for r in rows] == ["aaaaaaa", "bbbbbbb", "ccccccc", "ddddddd", "eeeeeee"]
    assert [r.status for r in rows] == ["keep", "keep", "discard", "crash", "interrupted"]
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].val_bpb == 0.9979 and rows[3].val_bpb is None and rows[4].val_bpb is None
    assert rows[1].delta == pytest.approx(-0.0119) and rows[1].test_bpb == pytest.approx(0.9871)
    assert rows[0].seeds == 2 and rows[0].training_seconds == pytest.approx(300.3) and rows[0].delta is None
    assert rows[2].memory_gb == 44.0

    # regenerating replaces the file; another target path works too
    led.append(_decided(5, "discard", 0.987, 0.001))
    assert len(read_results_tsv(led.write_results_tsv())) == 6
    other = led.write_results_tsv(tmp_path / "copy.tsv")
    assert other.read_text() == path.read_text()


def test_upstream_results_tsv_import() -> None:
    rows = read_results_tsv(UPSTREAM_TSV)
    assert len(rows) == 126
    statuses = [r.status for r in rows]
    assert statuses.count("keep") == 23 and statuses.count("discard") == 102 and statuses.count("crash") == 1
    assert rows[0].val_bpb == pytest.approx(0.9979) and rows[0].description == "baseline"
    assert min(r.val_bpb for r in rows if r.status == "keep") == pytest.approx(0.969686)
    crash = next(r for r in rows if r.status == "crash")
    assert crash.val_bpb is None and crash.memory_gb == 0.0
    assert [r.index for r in rows] == list(range(126))
    assert all(r.delta is None and r.seeds is None and r.test_bpb is None for r in rows)
    assert rows[1].commit == "bea057b" and rows[1].memory_gb == 43.9


def test_read_results_tsv_tolerates_headerless_and_tabbed_descriptions(tmp_path: Path) -> None:
    p = tmp_path / "r.tsv"
    p.write_text("a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n\nb2c3d4e\t0.993000\t44.2\tdiscard\tuse\tGeLU\n")
    rows = read_results_tsv(p)
    assert [r.commit for r in rows] == ["a1b2c3d", "b2c3d4e"]
    assert rows[1].description == "use GeLU" and rows[1].val_bpb == 0.993


def test_tail_new_events_from_a_second_instance(tmp_path: Path) -> None:
    writer = Ledger(tmp_path)
    reader = Ledger(tmp_path, writable=False)
    assert reader.tail_new_events() == []  # no file yet
    writer.append(_started(0, "baseline"))
    writer.append(_trained(0, 1, val=1.0))
    first = reader.tail_new_events()
    assert [e["event"] for e in first] == ["experiment_started", "training_finished"]
    assert reader.tail_new_events() == []
    writer.append(_trained(0, 2, val=1.002))
    writer.append(_decided(0, "keep", 1.001, None))
    new = reader.tail_new_events()
    assert [e["event"] for e in new] == ["training_finished", "decision"]
    assert new == writer.events()[2:]
    assert reader.best().val_bpb == pytest.approx(1.001)  # the reduction follows the tail
    assert writer.tail_new_events() == []  # a writer already has its own appends


def test_tail_while_another_thread_appends(tmp_path: Path) -> None:
    writer = Ledger(tmp_path)
    reader = Ledger(tmp_path, writable=False)
    n = 300
    seen: list[dict] = []
    done = threading.Event()

    def produce() -> None:
        for i in range(n):
            writer.append({"event": "tick", "i": i, "pad": "x" * (i % 50)})
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    while not done.is_set():
        seen += reader.tail_new_events()
        time.sleep(0.001)
    t.join()
    seen += reader.tail_new_events()
    assert [e["i"] for e in seen] == list(range(n))
    assert seen == writer.events()


def test_a_stale_writer_catches_up_before_appending(tmp_path: Path) -> None:
    a = Ledger(tmp_path)
    a.append({"event": "one"})
    b = Ledger(tmp_path)
    assert len(b) == 1
    a.append({"event": "two"})
    b.append({"event": "three"})
    assert [e["event"] for e in b.events()] == ["one", "two", "three"]
    assert [e["event"] for e in Ledger(tmp_path).events()] == ["one", "two", "three"]


def test_ten_thousand_experiments_load_fast(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    events = []
    for i in range(10_000):
        events.append(_started(i, "baseline" if i == 0 else "agent"))
        events.append(_trained(i, 1, val=1.0 - i * 1e-6))
        if i % 3 == 0:
            events.append(_trained(i, 2, val=1.0 - i * 1e-6))
        events.append(_decided(i, "keep" if i % 10 == 0 else "discard", 1.0 - i * 1e-6, -1e-6))
    led.append_many(events)
    t0 = time.perf_counter()
    fresh = Ledger(tmp_path, writable=False)
    exps = fresh.experiments()
    elapsed = time.perf_counter() - t0
    assert len(exps) == 10_000 and fresh.best().index == 9990
    assert elapsed < 3.0, f"loading 10,000 experiments took {elapsed:.2f} s (target < 1 s)"


def test_a_ledger_damaged_in_the_middle_is_one_clear_line_in_every_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import fixture_run

    run = fixture_run.build(tmp_path / "runs" / "mar8", experiments=4, open_status=None, stopped=True)
    events = run.state / "events.jsonl"
    lines = events.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a torn line with whole events after it
    events.write_text("\n".join(lines) + "\n")
    for command in (["status", "mar8"], ["review", "mar8", "--list"], ["report", "mar8"]):
        out = subprocess.run([sys.executable, "-m", "autoresearch", *command, "--runs-dir", str(tmp_path / "runs")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and "line 4" in out.stderr, (command, out.stderr)
        assert "unexpected error" not in out.stderr and "Traceback" not in out.stderr
