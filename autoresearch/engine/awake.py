"""Keep the machine awake while an engine runs.

A night of research is lost to the machine's idle sleep as surely as to a crash, so the engine holds sleep off for
as long as it lives:

* **macOS**: ``caffeinate -i -w <engine pid>``, a child that ends by itself when the engine ends (``-w``), even after
  a ``kill -9`` of the engine.
* **Linux**: ``systemd-inhibit --what=sleep:idle --mode=block`` around a command that lives exactly as long as the
  engine (``tail --pid=<pid> -f /dev/null`` with GNU tail, else a small ``kill -0`` loop in ``sh``), so it too ends
  by itself after a ``kill -9``. systemd-inhibit fails at once without a logind/D-Bus session (containers, some
  SSH logins): that is seen within a second and reported with its own reason.
* **Windows**: ``SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)``, held by the calling thread and
  cleared on release (Windows clears it too when the thread or the process ends).
* Elsewhere, or when nothing works: nothing is held, and :attr:`Inhibitor.hint` says how to do it by hand.

Nothing here raises: a missing or failing inhibitor is a line in the log, not an error. ``AUTORESEARCH_NO_INHIBIT=1``
turns it all off (tests, and users who manage sleep themselves). :func:`sleep_status` is the doctor's view: which
mechanism this machine would use and whether it is available, starting nothing long-lived.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ENV_OFF = "AUTORESEARCH_NO_INHIBIT"
SETTLE_S = 1.0  # how long systemd-inhibit gets to fail (it fails in milliseconds without logind)
CAFFEINATE_SETTLE_S = 0.2  # caffeinate fails at once too (a bad pid); it has no child to show it took
POLL_S = 5  # the period of the sh fallback's kill -0 loop, where GNU tail is missing
ES_CONTINUOUS = 0x80000000
ES_SYSTEM_REQUIRED = 0x00000001

RESUMES = "a sleep loses nothing: the run resumes when the machine wakes"
HINTS = {
    "darwin": "to keep the Mac awake by hand, run `caffeinate -is` in another terminal while the engine runs, or "
              "turn off automatic sleep in System Settings",
    "linux": "to keep the machine awake by hand, start the engine as `systemd-inhibit --what=sleep autoresearch run "
             "--headless`, or turn off automatic suspend in the desktop's power settings",
    "win32": "to keep the PC awake by hand, set Sleep to Never in the power options (Settings > System > Power)",
    "other": "to keep the machine awake, turn off automatic sleep in the system's power settings",
}


def _system() -> str:
    """'darwin', 'linux', 'win32' or 'other' (the tests replace this to take the macOS path on Linux)."""
    p = sys.platform
    return "linux" if p.startswith("linux") else p if p in ("darwin", "win32") else "other"


def _hint(system: str) -> str:
    return f"{HINTS.get(system, HINTS['other'])}; {RESUMES}"


def _disabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no", "off")


@dataclass
class Inhibitor:
    """What holds sleep off (or why nothing does). ``release()`` ends it; it is idempotent, and the object is a
    context manager. A child process (caffeinate, systemd-inhibit) also ends by itself when the engine ends."""

    held: bool
    how: str
    hint: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    _undo: Callable[[], None] | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    @property
    def line(self) -> str:
        """The engine log's line: what holds sleep off, or why nothing does and what to do about it."""
        return self.how if self.held or not self.hint else f"{self.how}. {self.hint[0].upper()}{self.hint[1:]}"

    @property
    def running(self) -> bool:
        """Whether it still holds: its child still runs (or, for Windows, it was not released)."""
        if not self.held or self._released:
            return False
        return self.process is None or self.process.poll() is None

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            if self._undo is not None:
                self._undo()
            if self.process is not None:
                _end(self.process)
        except Exception:  # never raise: at worst the child ends with the engine
            pass

    def __enter__(self) -> Inhibitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_awake(pid: int | None = None, *, why: str = "autoresearch is training") -> Inhibitor:
    """Hold sleep off while process ``pid`` (default: this one, the engine) lives. Never raises."""
    system = _system()
    if _disabled():
        return Inhibitor(False, f"sleep not held off: {ENV_OFF} is set", _hint(system))
    pid = os.getpid() if pid is None else int(pid)
    try:
        if system == "darwin":
            return _caffeinate(pid)
        if system == "linux":
            return _systemd_inhibit(pid, why)
        if system == "win32":
            return _windows()
        return Inhibitor(False, f"sleep not held off: no way to hold it off on {sys.platform}", _hint(system))
    except Exception as e:  # pragma: no cover - a bug here must not stop the night
        return Inhibitor(False, f"sleep not held off: {type(e).__name__}: {e}", _hint(system))


# -- the mechanisms ----------------------------------------------------------------------------------------------
def _caffeinate(pid: int) -> Inhibitor:
    exe = shutil.which("caffeinate") or ("/usr/bin/caffeinate" if os.path.exists("/usr/bin/caffeinate") else None)
    if exe is None:
        return Inhibitor(False, "sleep not held off: caffeinate is not installed", _hint("darwin"))
    return _spawn([exe, "-i", "-w", str(pid)], "caffeinate", CAFFEINATE_SETTLE_S, "darwin")


def _systemd_inhibit(pid: int, why: str) -> Inhibitor:
    exe = shutil.which("systemd-inhibit")
    if exe is None:
        return Inhibitor(False, "sleep not held off: systemd-inhibit is not installed (no systemd here)", _hint("linux"))
    argv = [exe, "--what=sleep:idle", "--who=autoresearch", f"--why={why}", "--mode=block", *_lifetime_of(pid)]
    return _spawn(argv, "systemd-inhibit", SETTLE_S, "linux", took=_has_child)


def _lifetime_of(pid: int) -> list[str]:
    """A command that ends when process ``pid`` ends, however it ends (kill -9 included)."""
    tail = shutil.which("tail")
    if tail and _gnu_tail(tail):
        return [tail, f"--pid={pid}", "-f", "/dev/null"]  # GNU tail checks the pid every second
    return [shutil.which("sh") or "/bin/sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep {POLL_S}; done"]


@lru_cache(maxsize=8)
def _gnu_tail(tail: str) -> bool:
    try:
        out = subprocess.run([tail, "--version"], capture_output=True, text=True, timeout=3, stdin=subprocess.DEVNULL,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GNU" in out.stdout


def _has_child(proc: subprocess.Popen) -> bool:
    """systemd-inhibit forks its command only once the inhibitor lock is granted: a child means it took."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children", encoding="ascii") as f:
            return bool(f.read().strip())
    except OSError:
        return False  # no /proc: the settle time decides


def _spawn(argv: list[str], name: str, settle: float, system: str,
           took: Callable[[subprocess.Popen], bool] | None = None) -> Inhibitor:
    """Start the inhibitor ``argv`` and give it ``settle`` seconds to fail; held when it still runs (or ``took``)."""
    shown = shlex.join([name, *argv[1:]])
    err = tempfile.TemporaryFile()  # (a file, not a pipe: nobody reads it while the night goes on)
    try:
        # its own session: Ctrl-C or a hang-up in the engine's terminal does not end it before the engine has
        # stopped, and release() ends it with its command as one process group
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, close_fds=True)
    except OSError as e:
        err.close()
        return Inhibitor(False, f"sleep not held off: {name} did not start ({e.strerror or e})", _hint(system))
    deadline = time.monotonic() + settle
    while proc.poll() is None and time.monotonic() < deadline:
        if took is not None and took(proc):
            break
        time.sleep(0.02)
    if proc.poll() is None:
        err.close()
        return Inhibitor(True, f"sleep held off: {shown}", process=proc)
    err.seek(0)
    said = " ".join(line.strip() for line in err.read().decode("utf-8", "replace").splitlines() if line.strip())
    err.close()
    reason = said[:300] or f"it exited with status {proc.returncode}"
    return Inhibitor(False, f"sleep not held off: {name} failed ({reason})", _hint(system))


def _end(proc: subprocess.Popen) -> None:
    """End the inhibitor and its command (one process group: it was started in a session of its own)."""
    if proc.poll() is not None:  # ended by itself (never signal a group whose leader is gone: its id may be reused)
        return
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)  # (safe: the leader is alive or an unreaped zombie, so the id is still ours)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _windows() -> Inhibitor:
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        kernel32.SetThreadExecutionState.restype = ctypes.c_uint32
        kernel32.SetThreadExecutionState.argtypes = [ctypes.c_uint32]
        previous = kernel32.SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)
    except Exception as e:
        return Inhibitor(False, f"sleep not held off: SetThreadExecutionState is unavailable ({e})", _hint("win32"))
    if not previous:
        return Inhibitor(False, "sleep not held off: SetThreadExecutionState failed", _hint("win32"))
    thread = threading.get_ident()

    def undo() -> None:
        if threading.get_ident() == thread:  # (the state is the thread's: only it can clear it; it ends with it)
            kernel32.SetThreadExecutionState(ES_CONTINUOUS)

    return Inhibitor(True, "sleep held off: SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)", _undo=undo)


# -- the doctor's view -------------------------------------------------------------------------------------------
@dataclass
class SleepSupport:
    """Which mechanism this machine would use, and whether it is available (nothing long-lived is started)."""

    mechanism: str  # caffeinate, systemd-inhibit, SetThreadExecutionState, none, off
    available: bool
    detail: str
    hint: str = ""

    @property
    def summary(self) -> str:
        return f"held off while an engine runs: {self.detail}" if self.available else f"not held off: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "available": self.available, "summary": self.summary, "hint": self.hint}


def sleep_support() -> SleepSupport:
    system = _system()
    hint = _hint(system)
    if _disabled():
        return SleepSupport("off", False, f"{ENV_OFF} is set (sleep is left to you)", hint)
    if system == "darwin":
        exe = shutil.which("caffeinate") or ("/usr/bin/caffeinate" if os.path.exists("/usr/bin/caffeinate") else None)
        if exe is None:
            return SleepSupport("caffeinate", False, "caffeinate is not installed", hint)
        return SleepSupport("caffeinate", True, "caffeinate -i -w <engine pid>")
    if system == "linux":
        exe = shutil.which("systemd-inhibit")
        if exe is None:
            return SleepSupport("systemd-inhibit", False, "systemd-inhibit is not installed (no systemd here)", hint)
        try:
            out = subprocess.run([exe, "--list", "--no-pager", "--no-legend"], capture_output=True, text=True,
                                 timeout=3, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return SleepSupport("systemd-inhibit", False, "systemd-inhibit --list did not answer in 3 s", hint)
        except OSError as e:
            return SleepSupport("systemd-inhibit", False, f"systemd-inhibit did not start ({e.strerror or e})", hint)
        if out.returncode != 0:
            said = " ".join(line.strip() for line in out.stderr.splitlines() if line.strip())[:300]
            return SleepSupport("systemd-inhibit", False,
                                f"systemd-inhibit cannot reach logind ({said or f'exit status {out.returncode}'})", hint)
        return SleepSupport("systemd-inhibit", True, "systemd-inhibit --what=sleep:idle (logind answers)")
    if system == "win32":
        try:
            import ctypes

            ctypes.windll.kernel32.SetThreadExecutionState  # type: ignore[attr-defined]  # noqa: B018
        except Exception as e:
            return SleepSupport("SetThreadExecutionState", False, f"SetThreadExecutionState is unavailable ({e})", hint)
        return SleepSupport("SetThreadExecutionState", True, "SetThreadExecutionState(ES_CONTINUOUS | ES_SYSTEM_REQUIRED)")
    return SleepSupport("none", False, f"no way to hold it off on {sys.platform}", hint)


def sleep_status() -> str:
    """One line for the doctor: which mechanism this machine would use and whether it is available."""
    try:
        return sleep_support().summary
    except Exception as e:  # pragma: no cover
        return f"not known ({type(e).__name__}: {e})"
