"""The morning's side of a run: its kept changes with their evidence, the user's verdicts, reverts, re-tests.

Every client (``autoresearch review``, the review screen, a script) goes through these functions; what they
decide is written to the run's ledger (``review`` events, a ``revert`` experiment) or sent to its engine
(``control``), so a second look starts where the first stopped, in any client.

A revert takes one kept change back from the current best. When no engine runs the run, it is made at once
(the run's lock is held meanwhile, so no engine starts under it); when one runs, it is queued and the engine
makes it at the next experiment boundary. Either way it is a new commit on top of the best and an experiment
of kind ``revert`` that becomes the best. Its val_bpb is known at once when the script it gives is one the run
has measured (taking back the latest keep gives its parent's script); otherwise the engine measures it before
its next experiment, so the policy never compares against a figure nobody measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import control
from .events import Decision, ExperimentStarted, ReviewMarked
from .experiments import Experiment
from .ledger import Ledger
from .diffs import script_at
from .merge import apply_change, changed_lines
from .rundir import PENDING, RunDir, RunError, RunLock, script_hash

DEFAULT_RETEST_SEEDS = 2


class ReviewError(RunError):
    """A review action that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class KeptChange:
    """One kept change with what the review shows of it."""

    index: int
    description: str
    commit: str
    parent: str | None
    parent_index: int | None
    val_bpb: float | None
    delta: float | None  # against its parent (the best when it was tried); negative is better
    sigma: float | None  # the run's noise (std of one training's val_bpb)
    seeds: int  # successful trainings behind val_bpb (re-tests included)
    test_bpb: float | None  # the held-out test split (never seen by the agent)
    test_delta: float | None  # against the parent's test_bpb
    training_seconds: float | None
    memory_gb: float | None
    verdict: str  # accept | reject | unreviewed
    reverted_by: int | None

    @property
    def confidence(self) -> float | None:
        """The improvement in units of the noise (improvement / sigma): 2 or more is clearly above it."""
        if self.delta is None or not self.sigma:
            return None
        return -self.delta / self.sigma

    @property
    def test_disagrees(self) -> bool:
        """It improved val_bpb but not the held-out test split."""
        return self.delta is not None and self.delta < 0 and self.test_delta is not None and self.test_delta >= 0


def kept_changes(ledger: Ledger) -> list[KeptChange]:
    """The run's kept agent changes in the order they were kept (the baseline and reverts left out)."""
    exps = ledger.experiments()
    by_commit = {e.commit: e for e in exps if e.commit and e.status == "keep"}
    noise = ledger.last("noise_estimate") or {}
    sigma = noise.get("sigma") if isinstance(noise.get("sigma"), (int, float)) else None
    out = []
    for e in exps:
        if e.kind != "agent" or e.status != "keep" or not e.commit:
            continue
        parent = by_commit.get(e.parent)
        delta = e.delta
        if parent is not None and (e.remeasured or parent.remeasured) and e.val_bpb is not None \
                and parent.val_bpb is not None:
            delta = e.val_bpb - parent.val_bpb  # re-tested: against the figures as they are now
        test_delta = (e.test_bpb - parent.test_bpb) if parent is not None and e.test_bpb is not None \
            and parent.test_bpb is not None else None
        out.append(KeptChange(
            index=e.index, description=e.description, commit=e.commit, parent=e.parent,
            parent_index=parent.index if parent is not None else None, val_bpb=e.val_bpb, delta=delta, sigma=sigma,
            seeds=len(e.ok_values), test_bpb=e.test_bpb, test_delta=test_delta, training_seconds=e.training_seconds,
            memory_gb=e.memory_gb, verdict=e.verdict, reverted_by=e.reverted_by))
    return out


def kept_experiment(ledger: Ledger, index: int) -> Experiment:
    exp = ledger.experiment(index)
    if exp is None:
        raise ReviewError(f"the run has no experiment {index}")
    if exp.kind != "agent" or exp.status != "keep":
        what = "the baseline" if exp.kind == "baseline" else f"{exp.status or 'still running'}"
        raise ReviewError(f"experiment {index} is not a kept change ({what}); only kept changes are reviewed")
    return exp


def mark(run: RunDir, index: int, verdict: str) -> None:
    """Record the user's verdict on kept change ``index`` (accept, reject, or unreviewed to take it back)."""
    ledger = Ledger(run.path)
    kept_experiment(ledger, index)
    ledger.append(ReviewMarked(index=index, verdict=verdict))


# -- re-tests -----------------------------------------------------------------------------------------------

def request_retest(run: RunDir, index: int, seeds: int = DEFAULT_RETEST_SEEDS) -> str:
    """Queue ``seeds`` more trainings of kept change ``index``; the engine runs them before its next experiment.

    Returns what happens, for the user."""
    if seeds < 1:
        raise ReviewError("a re-test needs at least one seed")
    kept_experiment(Ledger(run.path, writable=False), index)
    control.send(run.state, "retest", index=index, seeds=seeds)
    if RunLock(run).is_held():
        return f"re-test of experiment {index} ({seeds} seed(s)) queued: the engine runs it before its next experiment"
    return (f"re-test of experiment {index} ({seeds} seed(s)) queued: no engine runs {run.tag} now; it runs when the "
            f"run is resumed (`autoresearch run --tag {run.tag}`)")


# -- reverts ------------------------------------------------------------------------------------------------

def request_revert(run: RunDir, index: int) -> str:
    """Take kept change ``index`` back: at once when no engine runs the run, else at its next boundary."""
    ledger = Ledger(run.path, writable=False)
    revertable_experiment(ledger, index)
    lock = RunLock(run)
    try:
        lock.acquire()
    except RunError:  # an engine runs it: it makes the revert between two experiments
        control.send(run.state, "revert", index=index)
        return f"revert of experiment {index} queued: the engine makes it after the current experiment"
    try:
        rev = apply_revert(run, Ledger(run.path), index)
    finally:
        lock.release()
    return f"experiment {index} reverted: experiment {rev.index} ({rev.commit[:7] if rev.commit else '?'}) is the best now" + (
        "" if rev.val_bpb is not None else "; the engine measures it when the run is resumed")


def revertable_experiment(ledger: Ledger, index: int) -> Experiment:
    exp = kept_experiment(ledger, index)
    if exp.reverted_by is not None:
        raise ReviewError(f"experiment {index} was already reverted (by experiment {exp.reverted_by})")
    return exp


def apply_revert(run: RunDir, ledger: Ledger, index: int, request: str | None = None) -> Experiment:
    """Commit the best minus change ``index`` and record it as a kept ``revert`` experiment; returns it.

    The caller holds the run's lock (the engine, or :func:`request_revert`). Raises ReviewError when the change
    cannot be taken back cleanly (a later kept change rewrote its lines), or when the run's tree holds work that
    is not the engine's: nothing is changed then. The commit is made between PENDING marks, as the loop's own
    (a kill in between is undone when the run resumes).
    """
    exp = revertable_experiment(ledger, index)
    best = ledger.best()
    if best is None or not best.commit or not exp.parent or not exp.commit:
        raise ReviewError("the run has no best to revert from")
    foreign, head = run.foreign_changes(), run.head()
    if foreign or (head != best.commit and not run.is_experiment_commit(head)):
        what = ", ".join(foreign) if foreign else f"a commit of its own ({head[:7]})"
        raise ReviewError(f"{run.path} holds work the engine did not make ({what}): keep it elsewhere and "
                          f"`git -C {run.path} reset --hard {best.commit[:7]}`, then revert again")
    run.reset_to(best.commit)
    change = (script_at(run, exp.parent), script_at(run, exp.commit))
    source = apply_change(script_at(run, best.commit), change[1], change[0])
    if source is None:
        added = changed_lines(*change)[1]
        later = [e.index for e in ledger.experiments() if e.kind == "agent" and e.status == "keep" and e.index > index
                 and e.parent and e.commit and e.reverted_by is None
                 and added & changed_lines(script_at(run, e.parent), script_at(run, e.commit))[0]]
        raise ReviewError(f"experiment {index} cannot be taken back cleanly: later kept change(s) "
                          f"{', '.join(map(str, later)) or '?'} rewrote its lines. Revert those first.")
    new_index = ledger.next_index()
    sha = script_hash(source)
    same = next((e for e in reversed(ledger.experiments()) if e.status == "keep" and e.val_bpb is not None and e.commit
                 and (e.script_sha256 or script_hash(script_at(run, e.commit))) == sha), None)
    pending = run.state / PENDING
    pending.write_text(str(new_index))
    commit = run.commit_script(source, f"revert experiment {index}: {exp.description}"[:200], new_index)
    reason = f"experiment {index} reverted by the user"
    reason += f"; the same script as experiment {same.index}, its figures" if same else "; to be measured"
    started = ExperimentStarted(index=new_index, kind="revert", parent=best.commit, commit=commit,
                                description=f"revert {index}: {exp.description}", script_sha256=sha, reverts=index,
                                manifest_digest=(run.config().get("manifest_digest")))
    if request:
        started.extra["request"] = request
    val = same.val_bpb if same else None
    delta = (val - best.val_bpb) if val is not None and best.val_bpb is not None else None
    ledger.append_many([started, Decision(index=new_index, status="keep", val_bpb=val, delta=delta, reason=reason,
                                          test_bpb=same.test_bpb if same else None)])
    pending.unlink(missing_ok=True)
    ledger.write_results_tsv()
    result = ledger.experiment(new_index)
    assert result is not None
    return result


def format_review(changes: list[KeptChange]) -> str:
    """The kept changes as a table for a terminal (``autoresearch review --list``)."""
    if not changes:
        return "no kept change yet (only the baseline)"
    lines = [f"{'exp':>4}  {'verdict':<10} {'val_bpb':>9} {'delta':>10} {'sigma':>6} {'test_bpb':>9}  description"]
    for c in changes:
        verdict = f"reverted {c.reverted_by}" if c.reverted_by is not None else c.verdict
        val = f"{c.val_bpb:.6f}" if c.val_bpb is not None else "-"
        delta = f"{c.delta:+.6f}" if c.delta is not None else "-"
        conf = f"{c.confidence:.1f}" if c.confidence is not None else "-"
        test = f"{c.test_bpb:.6f}" if c.test_bpb is not None else "-"
        flag = "  (not better on test)" if c.test_disagrees else ""
        lines.append(f"{c.index:>4}  {verdict:<10} {val:>9} {delta:>10} {conf:>6} {test:>9}  {c.description}{flag}")
    left = sum(1 for c in changes if c.verdict == "unreviewed" and c.reverted_by is None)
    lines.append(f"{len(changes)} kept change(s), {left} unreviewed" + ("" if not left else
                 "; mark them with `autoresearch review RUN --accept N --reject N`, or in the app (`autoresearch review`)"))
    return "\n".join(lines)
