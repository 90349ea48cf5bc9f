"""Taking a run's changes home: a patch file, or a git branch with one commit per change.

The selection is the accepted changes (the review's verdicts) or every kept change; a reverted change is never
in it. The changes are applied in the order they were kept, each as the edit its experiment made
(:func:`~autoresearch.engine.merge.apply_change`), to the baseline train.py, all of them in memory first: when
one does not apply without a change left out before it, the export stops and names both, and nothing is
written (never half an export).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .ledger import Ledger
from .merge import apply_change
from .diffs import script_at
from .review import KeptChange, ReviewError, kept_changes
from .rundir import SCRIPT, RunDir

SELECTIONS = ("accepted", "all-kept")


class ExportConflict(ReviewError):
    """A selected change does not apply without one that was left out."""


@dataclass(frozen=True)
class Step:
    change: KeptChange
    source: str  # train.py after this change

    @property
    def message(self) -> str:
        c = self.change
        figures = [f"val_bpb {c.val_bpb:.6f}" if c.val_bpb is not None else "val_bpb ?"]
        if c.delta is not None:
            figures.append(f"delta {c.delta:+.6f}" + (f" ({c.confidence:.1f} sigma)" if c.confidence is not None else ""))
        if c.test_bpb is not None:
            figures.append(f"test_bpb {c.test_bpb:.6f}")
        return f"{c.description}\n\nautoresearch experiment {c.index}: {', '.join(figures)}"


@dataclass(frozen=True)
class Series:
    run: RunDir
    baseline: str  # the baseline's train.py
    baseline_commit: str
    steps: list[Step]

    @property
    def final(self) -> str:
        return self.steps[-1].source if self.steps else self.baseline


def select(ledger: Ledger, which: str) -> list[KeptChange]:
    if which not in SELECTIONS:
        raise ReviewError(f"selection is one of {', '.join(SELECTIONS)}, not {which!r}")
    kept = [c for c in kept_changes(ledger) if c.reverted_by is None]
    return kept if which == "all-kept" else [c for c in kept if c.verdict == "accept"]


def build(run: RunDir, which: str = "accepted") -> Series:
    """Apply the selection to the baseline in memory; raises ExportConflict (nothing applied) or ReviewError."""
    ledger = Ledger(run.path, writable=False)
    chosen = select(ledger, which)
    if not chosen:
        raise ReviewError("no change is accepted yet: review the run first (`autoresearch review`), or export "
                          "--all-kept" if which == "accepted" else "the run has no kept change to export")
    baseline = next((e for e in ledger.experiments() if e.kind == "baseline" and e.commit), None)
    if baseline is None or not baseline.commit:
        raise ReviewError("the run has no baseline commit")
    chosen_ix = {c.index for c in chosen}
    left_out = [c for c in kept_changes(ledger) if c.index not in chosen_ix]
    source = baseline_script = script_at(run, baseline.commit)
    steps = []
    for change in chosen:
        assert change.parent is not None
        after = apply_change(source, script_at(run, change.parent), script_at(run, change.commit))
        if after is None:
            before = [c for c in left_out if c.index < change.index]
            why = ", ".join(f"{c.index} ({'reverted' if c.reverted_by is not None else c.verdict})" for c in before)
            raise ExportConflict(f"experiment {change.index} ({change.description}) does not apply without "
                                 f"experiment(s) {why or '?'} left out before it: include those, or leave "
                                 f"{change.index} out. Nothing was exported.")
        source = after
        steps.append(Step(change, source))
    return Series(run, baseline_script, baseline.commit, steps)


def write_patch(series: Series, path: Path) -> Path:
    """One patch of train.py, baseline to the last selected change (``git apply`` takes it; so does ``patch -p1``)."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-export-") as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        a.mkdir()
        b.mkdir()
        (a / SCRIPT).write_text(series.baseline)
        (b / SCRIPT).write_text(series.final)
        done = subprocess.run(["git", "diff", "--no-index", "--no-color", "--no-prefix", f"a/{SCRIPT}", f"b/{SCRIPT}"], cwd=tmp,
                              capture_output=True, text=True)
        if done.returncode not in (0, 1):
            raise ReviewError(f"git diff failed: {done.stderr.strip()}")
        diff = done.stdout
    header = [f"autoresearch run {series.run.tag}: {len(series.steps)} change(s) to the baseline train.py "
              f"({series.baseline_commit[:7]}), applied in order:"]
    header += [f"  experiment {s.change.index}: {s.message.splitlines()[0]} ({s.message.splitlines()[-1].split(': ', 1)[-1]})"
               for s in series.steps]
    header.append(f"Apply with: git apply {path.name}  (in the directory of the baseline train.py)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    tmp_path.write_text("\n".join(header) + "\n\n" + diff)
    os.replace(tmp_path, path)
    return path


def write_branch(series: Series, name: str, repo: Path | None = None, file: str = SCRIPT) -> list[str]:
    """A branch ``name`` with one commit per change (message: description + figures); returns the commits.

    ``repo``: a git repository of the user's (default: the run's own, where the branch starts at the baseline
    commit). In another repository the branch starts at its HEAD, with a first commit that sets ``file`` to the
    run's baseline when it is not that already. The working tree and the index of ``repo`` are not touched.
    """
    target = Path(repo).expanduser().resolve() if repo else series.run.path
    git = _Git(target)
    if not git.ok("rev-parse", "--git-dir"):
        raise ReviewError(f"{target} is not a git repository (git init it, or name another with --repo)")
    if repo is not None:  # ``file`` is relative to the folder named; git's paths below are from the root
        file = git.out("rev-parse", "--show-prefix") + file
    git = _Git(Path(git.out("rev-parse", "--show-toplevel")))
    if not git.ok("check-ref-format", "--branch", name):
        raise ReviewError(f"{name!r} is not a valid branch name")
    if git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{name}"):
        raise ReviewError(f"{target} already has a branch {name!r}: choose another name")
    if repo is None:
        parent: str | None = series.baseline_commit
        current = series.baseline
    else:
        parent = git.out("rev-parse", "--verify", "HEAD^{commit}") if git.ok("rev-parse", "--verify", "--quiet",
                                                                             "HEAD^{commit}") else None  # none yet
        current = git.out("show", f"{parent}:{file}", strip=False) if parent and git.ok("cat-file", "-e", f"{parent}:{file}") else None
    mode = "100644"
    if parent:
        listed = git.out("ls-tree", parent, "--", file).split()
        mode = listed[0] if listed and listed[0] in ("100644", "100755") else mode  # an executable script stays one
    commits: list[str] = []
    todo = [] if current == series.baseline else [(f"{file}: the baseline of autoresearch run {series.run.tag}", series.baseline)]
    todo += [(s.message, s.source) for s in series.steps]
    with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for message, source in todo:
            blob = git.out("hash-object", "-w", "--stdin", input=source)
            git.out("read-tree", *([parent] if parent else ["--empty"]), env=env)
            git.out("update-index", "--add", "--cacheinfo", f"{mode},{blob},{file}", env=env)
            tree = git.out("write-tree", env=env)
            parent = git.out("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=env)
            commits.append(parent)
    assert parent is not None
    git.out("update-ref", f"refs/heads/{name}", parent, "")  # "": it must not exist (never moves a branch made meanwhile)
    return commits


class _Git:
    """git in one repository, with an identity when the user has none configured (commit-tree needs one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: dict[str, str] | None = None  # asked of git once, on the first command that needs an env

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        if self._identity is None:
            who = "autoresearch", "autoresearch@localhost"
            self._identity = {} if self.ok("config", "user.email") else {
                "GIT_AUTHOR_NAME": who[0], "GIT_AUTHOR_EMAIL": who[1], "GIT_COMMITTER_NAME": who[0],
                "GIT_COMMITTER_EMAIL": who[1]}
        env = dict(os.environ, **(extra or {}))
        for key, value in self._identity.items():
            env.setdefault(key, value)
        return env

    def ok(self, *args: str) -> bool:
        return subprocess.run(["git", *args], cwd=self.path, capture_output=True).returncode == 0

    def out(self, *args: str, input: str | None = None, env: dict[str, str] | None = None, strip: bool = True) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True, input=input,
                              env=self._env(env))
        if done.returncode != 0:
            raise ReviewError(f"git {args[0]} failed in {self.path}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout.strip() if strip else done.stdout
