"""A full disk is the machine's fault, not the change's.

A training whose weights, log or trial files could not be written because the disk filled up (a backup, a
download, another run) says nothing about the agent's change: it is recorded as ``disk_full``, the engine
waits for space as it does between experiments, and the training runs again. Only when the training itself
wrote most of what was free is the change to blame (a script that saves a checkpoint every step): that stays
a crash, with the figures in its reason, for the agent to repair.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# how a full disk reads in a training's traceback (Python, Rust's safetensors, C libraries) or a git error
_MARKERS = ("No space left on device", "os error 28", "Errno 28", "ENOSPC", "Disk quota exceeded", "os error 122",
            "Errno 122", "EDQUOT")
# failures a full disk can cause: a crash (a write raised), invalid (no weights handed back), a timeout (a
# process blocked on a write); never an ok, a score, an early stop or a stop asked for
_FAILURES = ("crash", "invalid", "timeout")
_CHANGE_SHARE = 0.5  # the training wrote at least this share of what was free at its start: the change filled it


def is_disk_full(error: BaseException) -> bool:
    """An OSError of a full disk or quota, or an error (git's) whose message says so."""
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return True
    return mentions_full_disk(str(error))


def mentions_full_disk(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (-1 when it cannot be read)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1


def tree_bytes(path: Path) -> int:
    """Bytes in the files under ``path`` (what a trial wrote), 0 when it is gone."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def gb(n: int) -> str:
    """A size as a person reads it: MB under a GB."""
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


@dataclass(frozen=True)
class DiskFault:
    machine: bool  # True: the disk filled up around the training; False: the training itself filled it
    reason: str


def training_disk_fault(status: str, text: str, *, free_before: int, free_now: int, floor: int,
                        wrote: int) -> DiskFault | None:
    """Whether a failed training failed for a full disk, and whose fault that was (None: not the disk).

    ``text``: its reason and log tail; ``free_before``/``free_now``: free bytes at its start and now; ``floor``:
    the run's disk floor; ``wrote``: bytes its trial directory holds."""
    if status not in _FAILURES:
        return None
    said = mentions_full_disk(text)
    low = 0 <= free_now < floor
    if not said and not low:
        return None
    how = "the disk filled up during the training" if said else "the training failed with the disk below the floor"
    if free_before > 0 and wrote >= _CHANGE_SHARE * free_before:
        return DiskFault(False, f"{how}: the training itself wrote {gb(wrote)} (of {gb(free_before)} free at its "
                                "start); write less (fewer or smaller checkpoints)")
    return DiskFault(True, f"{how} ({gb(max(free_now, 0))} free now, {gb(max(free_before, 0))} at its start; the "
                           f"training wrote {gb(wrote)})")

