"""Confining the agent's code: what a training or serving process may read, write and reach.

On Linux the launcher (``python -m autoresearch.harness.sandbox POLICY.json -- CMD...``, trusted code) sets
itself as the child subreaper, starts CMD with ``no_new_privs`` and a Landlock ruleset (file reads limited to
the Python installation, the system's libraries and what the policy names; writes to the policy's paths
only; no TCP), and when CMD ends kills every process it left behind (orphans are reparented to the launcher,
so none escapes), then exits with CMD's status. Without Landlock (an old kernel, macOS, Windows) the launcher
still reaps leftovers, and :func:`availability` says what is missing so `doctor` and the run's first lines
can say it.

The policy is plain JSON: ``{"read": [paths], "read_dir": [paths], "read_file": [paths], "write": [paths]}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Landlock ABI (linux/landlock.h)
_SYS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "arm64": (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS = {name: 1 << i for i, name in enumerate((
    "execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file", "make_char", "make_dir",
    "make_reg", "make_sock", "make_fifo", "make_block", "make_sym", "refer", "truncate", "ioctl_dev"))}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2
_PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER = 38, 36

READ = ("execute", "read_file", "read_dir")
WRITE = READ + ("write_file", "remove_dir", "remove_file", "make_dir", "make_reg", "make_sym", "refer", "truncate")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass
class Policy:
    read: list[str] = field(default_factory=list)  # whole trees, read (and execute)
    read_dir: list[str] = field(default_factory=list)  # directories that may be listed, not their files read
    read_file: list[str] = field(default_factory=list)  # single files
    write: list[str] = field(default_factory=list)  # whole trees, read and write
    devices: list[str] = field(default_factory=list)  # device files, read/write/ioctl (GPU nodes, /dev/null)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        raw = json.loads(text)
        return cls(**{k: [str(p) for p in raw.get(k, [])] for k in ("read", "read_dir", "read_file", "write", "devices")})


@dataclass(frozen=True)
class Availability:
    landlock_abi: int  # 0: none
    reason: str  # why confinement is missing or partial ("" when full)

    @property
    def confined(self) -> bool:
        return self.landlock_abi >= 1

    def summary(self) -> str:
        if not self.confined:
            return f"not confined: {self.reason}"
        net = "no network (TCP)" if self.landlock_abi >= 4 else "network not restricted (Landlock ABI < 4)"
        return f"confined by Landlock ABI {self.landlock_abi}: file reads and writes limited, {net}" + \
            (f"; {self.reason}" if self.reason else "")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def availability() -> Availability:
    """What confinement this machine offers the agent's processes."""
    if not sys.platform.startswith("linux"):
        return Availability(0, f"no Landlock on {sys.platform}: the training can read any file the user can "
                               "(run on Linux, or in a VM or container, for a confined night)")
    numbers = _SYS.get(os.uname().machine)
    if numbers is None:
        return Availability(0, f"Landlock system calls unknown for {os.uname().machine}")
    libc = _libc()
    abi = libc.syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi < 0:
        err = ctypes.get_errno()
        return Availability(0, f"the kernel offers no Landlock ({os.strerror(err)}): it needs Linux >= 5.13 with "
                               "Landlock enabled (lsm=landlock)")
    return Availability(int(abi), "")


def _fs_mask(abi: int, names: tuple[str, ...]) -> int:
    mask = 0
    for n in names:
        bit = _FS[n]
        if (n == "refer" and abi < 2) or (n == "truncate" and abi < 3) or (n == "ioctl_dev" and abi < 5):
            continue
        mask |= bit
    return mask


def restrict(policy: Policy, abi: int) -> None:
    """Apply ``policy`` to this process and all it starts (irreversible). Raises OSError on failure."""
    libc = _libc()
    create, add_rule, restrict_self = _SYS[os.uname().machine]
    handled = _fs_mask(abi, tuple(_FS))
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        def allow(path: str, names: tuple[str, ...]) -> None:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return  # a path that does not exist here: nothing to allow
            try:
                mask = _fs_mask(abi, names)
                if not os.path.isdir(path):  # a file: only file rights apply
                    mask &= _fs_mask(abi, ("execute", "read_file", "write_file", "truncate", "ioctl_dev"))
                rule = _PathBeneathAttr(mask, pfd)
                if libc.syscall(add_rule, ctypes.c_int(fd), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                                ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(pfd)

        for p in policy.read:
            allow(p, READ)
        for p in policy.read_dir:
            allow(p, ("read_dir",))
        for p in policy.read_file:
            allow(p, ("read_file",))
        for p in policy.write:
            allow(p, WRITE)
        for p in policy.devices:
            allow(p, ("read_file", "write_file", "ioctl_dev"))
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(restrict_self, ctypes.c_int(fd), ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(fd)


def system_read_paths() -> list[str]:
    """What any Python program needs to read: the interpreter, its libraries, the system's shared libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            paths.add(value)
    # installed packages only: not the working directory or a script's folder that sys.path may also hold
    paths |= {p for p in sys.path if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p)}
    paths |= {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/opt", "/run/nvidia-persistenced"}
    return sorted(p for p in paths if os.path.exists(p))


def device_paths() -> list[str]:
    names = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full", "/dev/tty"]
    try:
        names += [f"/dev/{n}" for n in os.listdir("/dev") if n.startswith("nvidia")]
    except OSError:
        pass
    if os.path.isdir("/dev/dri"):
        names.append("/dev/dri")
    return [n for n in names if os.path.exists(n)]


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process, its process group and every descendant (even ones that left the group)."""
    try:
        import psutil

        descendants = psutil.Process(pid).children(recursive=True)
    except Exception:
        descendants = []
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for p in descendants:
        try:
            p.send_signal(sig)
        except Exception:
            pass


def _reap(children_of: int) -> None:
    """Kill every process this launcher still has below it (the agent's leftovers), then reap them."""
    try:
        import psutil

        procs = psutil.Process(children_of).children(recursive=True)
    except Exception:
        procs = []
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    """``python -m autoresearch.harness.sandbox POLICY_FILE -- CMD ARGS...``: run CMD confined, reap what it leaves."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m autoresearch.harness.sandbox POLICY_FILE -- CMD [ARGS...]", file=sys.stderr)
        return 2
    policy = Policy.from_json(Path(argv[0]).read_text())
    cmd = argv[2:]
    avail = availability()
    if sys.platform.startswith("linux"):
        _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def confine() -> None:  # in the child, before exec
        if avail.confined:
            restrict(policy, avail.landlock_abi)

    keep = [int(fd) for fd in os.environ.get("AUTORESEARCH_PASS_FDS", "").split(",") if fd.strip()]
    proc = subprocess.Popen(cmd, pass_fds=keep, preexec_fn=confine)  # noqa: PLW1509 - the launcher has no threads
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: proc.send_signal(s))
    code = proc.wait()
    _reap(os.getpid())
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
