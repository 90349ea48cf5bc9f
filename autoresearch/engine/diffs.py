"""The change an experiment made: its train.py against its parent's, from the run's git repository.

Discarded experiments are reset away from the branch but stay reachable (``refs/autoresearch/exp/NNNN``),
so every experiment's diff can be shown. Pure text; clients render it (unified, or side by side).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import git

from .rundir import SCRIPT, RunDir


@dataclass(frozen=True)
class ExperimentDiff:
    commit: str
    parent: str | None
    old: str  # the parent's train.py ('' for the baseline)
    new: str  # this experiment's train.py
    unified: str  # a unified diff of the two ('' when they are the same or there is no parent)
    added: int
    removed: int
    error: str = ""  # the commit could not be read (a run directory damaged by hand)

    @property
    def old_lines(self) -> list[str]:
        return self.old.splitlines()

    @property
    def new_lines(self) -> list[str]:
        return self.new.splitlines()


def script_at(run: RunDir, sha: str) -> str:
    """train.py as committed in ``sha``, byte for byte (its final newline included)."""
    return run.repo.git.show(f"{sha}:{SCRIPT}", strip_newline_in_stdout=False)


def experiment_diff(run: RunDir, commit: str, parent: str | None, context: int = 3) -> ExperimentDiff:
    """The diff of ``commit`` against ``parent`` (its best at the time); without a parent, the script itself."""
    try:
        new = script_at(run, commit) if commit else ""
        old = script_at(run, parent) if parent else ""
    except (git.GitCommandError, ValueError, OSError) as e:
        return ExperimentDiff(commit, parent, "", "", "", 0, 0, error=f"cannot read {commit[:7]}: {e}".strip())
    if not parent:
        return ExperimentDiff(commit, None, "", new, "", 0, 0)
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{SCRIPT} ({parent[:7]})",
                                      f"b/{SCRIPT} ({commit[:7]})", n=context, lineterm=""))
    added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    return ExperimentDiff(commit, parent, old, new, "\n".join(lines), added, removed)


@dataclass(frozen=True)
class SideBySideLine:
    """One row of a side-by-side diff: (line number, text) on each side, None where a side has no line."""

    kind: str  # equal | replace | delete | insert | gap
    left: tuple[int, str] | None
    right: tuple[int, str] | None


def side_by_side(old: str, new: str, context: int = 3) -> list[SideBySideLine]:
    """Aligned rows of the two scripts: changed blocks with ``context`` unchanged lines around them."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[SideBySideLine] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        if rows:
            rows.append(SideBySideLine("gap", None, None))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [SideBySideLine("equal", (i + 1, a[i]), (j + 1, b[j])) for i, j in zip(range(i1, i2), range(j1, j2))]
                continue
            left, right = list(range(i1, i2)), list(range(j1, j2))
            for k in range(max(len(left), len(right))):
                li = left[k] if k < len(left) else None
                rj = right[k] if k < len(right) else None
                rows.append(SideBySideLine(tag, (li + 1, a[li]) if li is not None else None,
                                           (rj + 1, b[rj]) if rj is not None else None))
    return rows
