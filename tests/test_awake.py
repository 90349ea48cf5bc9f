"""Keeping the machine awake while an engine runs, with real processes and stand-in inhibitors.

The stand-ins for ``systemd-inhibit`` and ``caffeinate`` are small shell scripts in a directory put first on PATH:
they record their argv and then do what the real ones do with it (systemd-inhibit runs its trailing command as a
child once the "lock" is granted and exits with it; caffeinate waits for the ``-w`` pid). The "engine" is a real
child process; killing it with SIGKILL must end the inhibitor by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch import doctor
from autoresearch.engine import awake
from autoresearch.engine.awake import hold_awake, sleep_status, sleep_support

SYSTEMD_INHIBIT = """#!/bin/sh
printf '%s\\n' "$@" > "{record}"
if [ "$1" = --list ]; then exit 0; fi
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; *) break ;; esac; done
"$@"
rc=$?
exit $rc
"""

FAILING_SYSTEMD_INHIBIT = """#!/bin/sh
printf '%s\\n' "$@" > "{record}"
if [ "$1" = --list ]; then echo "Failed to connect to bus: No such file or directory" >&2; exit 1; fi
echo "Failed to inhibit: Access denied" >&2
exit 1
"""

CAFFEINATE = """#!/bin/sh
printf '%s\\n' "$@" > "{record}"
pid=
while [ $# -gt 0 ]; do if [ "$1" = -w ]; then pid=$2; shift; fi; shift; done
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
"""


@pytest.fixture(autouse=True)
def _inhibit_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(awake.ENV_OFF, raising=False)
    monkeypatch.setattr(awake, "_system", lambda: "linux")


@pytest.fixture
def engine():
    """A real process standing in for the engine."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / f"{name}.argv"
    exe = bin_dir / name
    exe.write_text(script.format(record=record))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return record


def _argv(record: Path) -> list[str]:
    return record.read_text().splitlines()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int, *, until: list[str]) -> list[str]:
    """The arguments of ``pid`` once they are ``until`` (a forked child is the shell for a moment, before its exec)."""
    deadline = time.monotonic() + 3
    while True:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[1:-1]
        if args == until or time.monotonic() > deadline:
            return args
        time.sleep(0.02)


def _gone(pid: int, within: float = 5.0) -> bool:
    """The process has ended (no longer exists, or is a zombie waiting for its parent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _kill_engine(engine: subprocess.Popen) -> None:
    engine.send_signal(signal.SIGKILL)
    engine.wait()  # (reaped, as the engine's parent shell would: an unreaped zombie still answers kill -0)


def test_systemd_inhibit_lives_as_long_as_the_engine(tmp_path, monkeypatch, engine) -> None:
    record = _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    inh = hold_awake(engine.pid, why="autoresearch run mar5")
    try:
        assert inh.held and inh.running and inh.hint == ""
        assert inh.how.startswith("sleep held off: systemd-inhibit --what=sleep:idle") and str(engine.pid) in inh.how
        assert inh.line == inh.how
        args = _argv(record)
        assert args[:4] == ["--what=sleep:idle", "--who=autoresearch", "--why=autoresearch run mar5", "--mode=block"]
        assert Path(args[4]).name == "tail" and args[5:] == [f"--pid={engine.pid}", "-f", "/dev/null"]
        [waiter] = _children(inh.process.pid)
        wanted = [f"--pid={engine.pid}", "-f", "/dev/null"]
        assert _cmdline(waiter, until=wanted) == wanted
        assert inh.process.poll() is None
        _kill_engine(engine)
        started = time.monotonic()
        inh.process.wait(timeout=5)  # ended by itself: nobody called release()
        assert time.monotonic() - started < 4
        assert _gone(waiter) and not inh.running
    finally:
        inh.release()
    inh.release()  # idempotent


def test_release_ends_the_inhibitor_and_its_command(tmp_path, monkeypatch, engine) -> None:
    _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    with hold_awake(engine.pid) as inh:
        assert inh.held
        [waiter] = _children(inh.process.pid)
    assert inh.process.poll() is not None and _gone(waiter)
    assert engine.poll() is None  # the engine itself is untouched
    inh.release()


def test_default_pid_is_this_process(tmp_path, monkeypatch) -> None:
    record = _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    with hold_awake() as inh:
        assert inh.held and f"--pid={os.getpid()}" in _argv(record)
    assert inh.process.poll() is not None


def test_without_gnu_tail_a_kill_0_loop_waits(tmp_path, monkeypatch, engine) -> None:
    record = _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    monkeypatch.setattr(awake, "_gnu_tail", lambda tail: False)
    monkeypatch.setattr(awake, "POLL_S", 0.2)
    inh = hold_awake(engine.pid)
    try:
        assert inh.held
        args = _argv(record)
        assert Path(args[4]).name == "sh" and args[5] == "-c" and f"kill -0 {engine.pid}" in args[6]
        _kill_engine(engine)
        inh.process.wait(timeout=5)
    finally:
        inh.release()


def test_systemd_inhibit_that_fails_is_reported_not_raised(tmp_path, monkeypatch, engine) -> None:
    _stand_in(tmp_path, monkeypatch, "systemd-inhibit", FAILING_SYSTEMD_INHIBIT)
    started = time.monotonic()
    inh = hold_awake(engine.pid)
    assert time.monotonic() - started < awake.SETTLE_S  # the failure is seen as it happens, not after the wait
    assert not inh.held and not inh.running
    assert inh.how == "sleep not held off: systemd-inhibit failed (Failed to inhibit: Access denied)"
    assert "systemd-inhibit --what=sleep autoresearch run --headless" in inh.hint
    assert "power settings" in inh.hint and "the run resumes" in inh.hint
    assert inh.line.startswith(inh.how + ". To keep the machine awake by hand")
    inh.release()
    # the doctor: logind does not answer here
    assert sleep_status() == ("not held off: systemd-inhibit cannot reach logind "
                              "(Failed to connect to bus: No such file or directory)")
    check = doctor.check_sleep()
    assert check["mechanism"] == "systemd-inhibit" and check["available"] is False
    assert check["problems"] == []  # on Linux the Sleep line says it (a box without logind is mostly a server)
    assert "systemd-inhibit --what=sleep" in check["hint"]
    monkeypatch.setattr(awake, "_system", lambda: "darwin")  # where machines sleep by themselves it is a problem
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    [problem] = doctor.check_sleep()["problems"]
    assert "cannot keep this machine awake" in problem["problem"] and "caffeinate" in problem["fix"]


def test_sleep_status_when_logind_answers(tmp_path, monkeypatch) -> None:
    record = _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    assert sleep_status() == "held off while an engine runs: systemd-inhibit --what=sleep:idle (logind answers)"
    assert _argv(record)[0] == "--list"
    check = doctor.check_sleep()
    assert check["available"] is True and check["problems"] == []
    text = doctor.format_report({**_minimal_report(), "sleep": check})
    assert "\nSleep      held off while an engine runs: systemd-inhibit" in text


def test_caffeinate_on_macos(tmp_path, monkeypatch, engine) -> None:
    record = _stand_in(tmp_path, monkeypatch, "caffeinate", CAFFEINATE)
    monkeypatch.setattr(awake, "_system", lambda: "darwin")
    inh = hold_awake(engine.pid)
    try:
        assert inh.held and inh.how == f"sleep held off: caffeinate -i -w {engine.pid}"
        assert _argv(record) == ["-i", "-w", str(engine.pid)]
        assert sleep_status() == "held off while an engine runs: caffeinate -i -w <engine pid>"
        _kill_engine(engine)
        inh.process.wait(timeout=5)
    finally:
        inh.release()


def test_nothing_to_hold_with(tmp_path, monkeypatch, engine) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    inh = hold_awake(engine.pid)
    assert not inh.held and inh.process is None
    assert inh.how == "sleep not held off: systemd-inhibit is not installed (no systemd here)"
    assert "systemd-inhibit --what=sleep" in inh.hint
    inh.release()
    assert sleep_support().available is False
    monkeypatch.setattr(awake, "_system", lambda: "darwin")
    mac = hold_awake(engine.pid)
    assert not mac.held and "caffeinate is not installed" in mac.how and "caffeinate -is" in mac.hint
    monkeypatch.setattr(awake, "_system", lambda: "other")
    other = hold_awake(engine.pid)
    assert not other.held and "no way to hold it off" in other.how and "the run resumes" in other.hint
    assert sleep_status().startswith("not held off: no way to hold it off")


def test_turned_off_by_the_environment(tmp_path, monkeypatch, engine) -> None:
    record = _stand_in(tmp_path, monkeypatch, "systemd-inhibit", SYSTEMD_INHIBIT)
    monkeypatch.setenv("AUTORESEARCH_NO_INHIBIT", "1")
    inh = hold_awake(engine.pid)
    assert not inh.held and inh.process is None and "AUTORESEARCH_NO_INHIBIT is set" in inh.how
    assert not record.exists()  # nothing was started
    assert sleep_status() == "not held off: AUTORESEARCH_NO_INHIBIT is set (sleep is left to you)"
    assert doctor.check_sleep()["problems"] == []  # the user's choice, not a problem
    monkeypatch.setenv("AUTORESEARCH_NO_INHIBIT", "0")
    with hold_awake(engine.pid) as again:
        assert again.held


def test_windows_execution_state(monkeypatch) -> None:
    import ctypes

    calls: list[int] = []

    def set_state(flags: int) -> int:
        calls.append(flags)
        return awake.ES_CONTINUOUS

    class Kernel32:
        SetThreadExecutionState = staticmethod(set_state)

    class WinDLL:
        kernel32 = Kernel32()

    monkeypatch.setattr(ctypes, "windll", WinDLL(), raising=False)
    monkeypatch.setattr(awake, "_system", lambda: "win32")
    with hold_awake() as inh:
        assert inh.held and "SetThreadExecutionState" in inh.how
        assert calls == [awake.ES_CONTINUOUS | awake.ES_SYSTEM_REQUIRED]
    assert calls[-1] == awake.ES_CONTINUOUS  # cleared on release
    inh.release()
    assert len(calls) == 2
    assert sleep_support().available is True


def test_engine_package_does_not_pull_textual() -> None:
    code = ("import sys, autoresearch.engine.awake; "
            "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip() == "False", out.stderr


def _minimal_report() -> dict:
    """Just enough of diagnose()'s dict for format_report (no hardware detection, no network)."""
    return {
        "hardware": {"cpu_model": "cpu", "cpu_cores": 2, "cpu_threads": 2, "ram_gb": 8, "mps_available": False,
                     "mlx_version": None, "torch_version": None},
        "backend": {"name": "torch", "device": "cpu", "dtype": "float32", "compile": False},
        "profile": {"name": "cpu", "reason": "test", "time_budget": 60, "seq_len": 64, "depth": 2, "width": 64,
                    "device_batch_size": 4, "total_batch_size": 256, "vocab_size": 512, "eval_tokens": 1000,
                    "dataset": "stdlib"},
        "llm": {"provider": "ollama", "host": "http://127.0.0.1:9", "checked": False},
        "datasets": {"data_dir": "/nowhere", "prepared": []},
        "disk_free_gb": 10.0, "config": None, "problems": [],
    }
