"""The run directory: its own git repository, a frozen config, a pid lock.

    runs/<tag>/train.py                   the script under research (tracked)
    runs/<tag>/.gitignore                 ignores .autoresearch/
    runs/<tag>/.autoresearch/config.json  frozen run config
    runs/<tag>/.autoresearch/harness.json what the training script gets from the harness
    runs/<tag>/.autoresearch/events.jsonl, results.tsv, logs/NNNN.log, control, lock

Every experiment is a commit; a discarded one is reset away from the branch but kept reachable under
``refs/autoresearch/exp/NNNN`` so its diff can still be shown.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from .. import __version__
from ..paths import STATE_DIR as STATE
SCRIPT = "train.py"
GITIGNORE = f"/{STATE}/\n__pycache__/\n"
EXP_REF = "refs/autoresearch/exp/{index:04d}"
PENDING = "pending"  # in the state directory while train.py is being committed for an experiment (see loop._recover)


class RunError(Exception):
    """A problem with a run directory; the message says what to do."""


@dataclass
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        # absolute: the training subprocess runs with the run directory as its working directory
        self.path = Path(self.path).expanduser().resolve()

    # -- paths --------------------------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def script(self) -> Path:
        return self.path / SCRIPT

    @property
    def config_path(self) -> Path:
        return self.state / "config.json"

    @property
    def harness_path(self) -> Path:
        return self.state / "harness.json"

    @property
    def tag(self) -> str:
        return self.path.name

    def log_path(self, index: int, seed_run: int = 0) -> Path:
        suffix = f"-{seed_run}" if seed_run else ""
        return self.state / "logs" / f"{index:04d}{suffix}.log"

    def metrics_path(self, index: int, seed_run: int = 0) -> Path:
        suffix = f"-{seed_run}" if seed_run else ""
        return self.state / "metrics" / f"{index:04d}{suffix}.json"

    def exists(self) -> bool:
        return self.config_path.exists()

    # -- creation -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, script_source: str, config: dict[str, Any], harness: dict[str, Any]) -> "RunDir":
        path = Path(path)
        if (path / STATE / "config.json").exists():
            raise RunError(f"{path} already holds a run; resume it with --tag {path.name} or choose another tag")
        if path.exists() and any(path.iterdir()):
            raise RunError(f"{path} exists and is not empty; choose another --tag or --runs-dir")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.state.mkdir()
        (run.state / "logs").mkdir()
        (run.state / "metrics").mkdir()
        run.script.write_text(script_source)
        (path / ".gitignore").write_text(GITIGNORE)
        repo = git.Repo.init(path, initial_branch="main")
        with repo.config_writer() as cw:
            cw.set_value("user", "name", "autoresearch")
            cw.set_value("user", "email", "autoresearch@localhost")
            cw.set_value("commit", "gpgsign", "false")
        repo.index.add([SCRIPT, ".gitignore"])
        repo.index.commit("baseline: the unmodified template")
        config = dict(config, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), version=__version__, tag=path.name)
        _write_json(run.harness_path, harness)
        _write_json(run.config_path, config)  # last: its presence is what makes the directory a run
        return run

    # -- config -------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run directory (no {STATE}/config.json)") from None
        except ValueError as e:
            raise RunError(f"{self.config_path} is unreadable ({e})") from e

    # -- git ----------------------------------------------------------------------------------------
    @property
    def repo(self) -> git.Repo:
        return git.Repo(self.path)

    def head(self) -> str:
        return self.repo.head.commit.hexsha

    def short(self, sha: str) -> str:
        return sha[:7]

    def foreign_changes(self) -> list[str]:
        """Paths changed in the tree that the engine did not make (anything but a clean tree)."""
        out = self.repo.git.status("--porcelain", "--untracked-files=all")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def commit_script(self, source: str, message: str, index: int) -> str:
        self.script.write_text(source)
        repo = self.repo
        changed = [p for p in self.foreign_changes() if p != SCRIPT]
        if changed:
            raise RunError(f"files other than {SCRIPT} changed in {self.path}: {', '.join(changed)}")
        repo.index.add([SCRIPT])
        commit = repo.index.commit(message.strip().splitlines()[0][:200] or f"experiment {index}")
        self.mark_experiment(index, commit.hexsha)
        return commit.hexsha

    def is_experiment_commit(self, sha: str) -> bool:
        """Whether the engine made this commit (every experiment commit gets a ref), or it is the root."""
        refs = self.repo.git.for_each_ref("--format=%(objectname)", "refs/autoresearch/exp/").split()
        return sha in refs or not self.repo.commit(sha).parents

    def is_ancestor(self, ancestor: str, sha: str) -> bool:
        return self.repo.is_ancestor(ancestor, sha)

    def remove_stale_git_locks(self) -> None:
        """git's own lock files left by a process killed mid-commit (only call while holding the run lock)."""
        git_dir = self.path / ".git"
        for lock in [git_dir / "index.lock", git_dir / "HEAD.lock", *git_dir.glob("refs/**/*.lock")]:
            lock.unlink(missing_ok=True)

    def mark_experiment(self, index: int, sha: str) -> None:
        self.repo.git.update_ref(EXP_REF.format(index=index), sha)

    def reset_to(self, sha: str) -> None:
        """Make the branch and the tree exactly ``sha`` (a discard, or a resume after an interruption)."""
        self.repo.git.reset("--hard", sha)
        self.repo.git.clean("-fd", "-e", STATE)

    def diff(self, sha: str) -> str:
        return self.repo.git.diff(f"{sha}~1", sha, "--", SCRIPT)


def script_hash(source: str) -> str:
    """sha256 of the script with trailing whitespace normalised (duplicate detection, result binding)."""
    normal = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(normal.encode()).hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class RunLock:
    """One engine per run: an flock on .autoresearch/lock (released by the OS even after kill -9)."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.state / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            os.close(fd)
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise RunError(
                f"another engine ({who}) is running {self.path.parent.parent.name}; stop it with "
                f"`autoresearch stop {self.path.parent.parent.name}` or watch it with `autoresearch watch {self.path.parent.parent.name}`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def is_held(self) -> bool:
        """Whether an engine holds the lock now (for clients such as status)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def resolve_run(run: str | None, runs_dir: Path) -> RunDir:
    """RUN is a tag in runs_dir or a path to a run directory; None means the most recently active run."""
    if run:
        for candidate in (Path(run), runs_dir / run):
            if (candidate / STATE / "config.json").exists():
                return RunDir(candidate.resolve())
        raise RunError(f"no run {run!r} (looked for a directory or a tag in {runs_dir})")
    runs = [p for p in runs_dir.glob("*") if (p / STATE / "config.json").exists()] if runs_dir.exists() else []
    if not runs:
        raise RunError(f"no runs in {runs_dir}; start one with `autoresearch run --headless`")

    def activity(p: Path) -> float:
        events = p / STATE / "events.jsonl"
        return (events if events.exists() else p / STATE / "config.json").stat().st_mtime

    return RunDir(max(runs, key=activity).resolve())
