"""The morning, headless: kept changes and their evidence, verdicts, export (patch, branch), revert, notes.

All on a recorded night as a real run directory (real git repository, real ledger); exports checked with the
real ``git apply`` and ``git log``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from autoresearch.engine import control, notes
from autoresearch.engine.events import ControlTaken
from autoresearch.engine.export import ExportConflict, build, write_branch, write_patch
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.diffs import script_at
from autoresearch.engine.review import ReviewError, apply_revert, kept_changes, mark, request_revert
from autoresearch.engine.rundir import RunDir, RunLock

sys.path.insert(0, str(Path(__file__).parent))
import fixture_run  # noqa: E402

KEPT = [1, 2, 4, 5, 6, 7, 8, 10, 11, 13, 21, 37]  # the recorded night's kept changes
WORSE_ON_TEST = 5


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return fixture_run.build(tmp_path / "runs" / "mar8", open_status=None, stopped=True, worse_on_test=(WORSE_ON_TEST,))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_kept_changes_carry_their_evidence(run: RunDir) -> None:
    changes = kept_changes(Ledger(run.path, writable=False))
    assert [c.index for c in changes] == KEPT
    first = changes[0]
    assert first.parent_index == 0 and first.delta is not None and first.delta < 0
    assert first.sigma == pytest.approx(0.0007) and first.confidence == pytest.approx(-first.delta / 0.0007)
    assert first.seeds == 2 and first.training_seconds == 300.0 and first.memory_gb is not None
    assert first.verdict == "unreviewed"
    flagged = [c.index for c in changes if c.test_disagrees]
    assert flagged == [WORSE_ON_TEST]  # improved val_bpb, not the held-out test split


def test_verdicts_persist_and_only_kept_changes_take_one(run: RunDir) -> None:
    mark(run, 1, "accept")
    mark(run, 2, "reject")
    mark(run, 1, "reject")
    mark(run, 1, "accept")  # the latest verdict counts
    again = {c.index: c.verdict for c in kept_changes(Ledger(run.path, writable=False))}
    assert again[1] == "accept" and again[2] == "reject" and again[4] == "unreviewed"
    with pytest.raises(ReviewError, match="not a kept change"):
        mark(run, 3, "accept")  # a crash
    with pytest.raises(ReviewError, match="not a kept change"):
        mark(run, 0, "accept")  # the baseline


def test_patch_of_all_kept_applies_to_the_baseline_and_gives_the_best(run: RunDir, tmp_path: Path) -> None:
    series = build(run, "all-kept")
    patch = write_patch(series, tmp_path / "out" / "night.patch")
    work = tmp_path / "work"
    work.mkdir()
    baseline = Ledger(run.path, writable=False).experiments()[0].commit
    (work / "train.py").write_text(script_at(run, baseline))
    subprocess.run(["git", "apply", str(patch)], cwd=work, check=True)
    best = Ledger(run.path, writable=False).best()
    assert (work / "train.py").read_text() == script_at(run, best.commit)
    assert "experiment 37" in patch.read_text().split("diff --git")[0]


def test_branch_has_one_commit_per_accepted_change(run: RunDir, tmp_path: Path) -> None:
    for i in (1, 4, 10):
        mark(run, i, "accept")
    mark(run, 2, "reject")
    series = build(run)  # the accepted ones
    commits = write_branch(series, "night")
    log = git(run.path, "log", "--format=%s", "night").splitlines()
    assert len(commits) == 3 and log[:3] == [series.steps[2].change.description, series.steps[1].change.description,
                                             series.steps[0].change.description]
    body = git(run.path, "log", "-1", "--format=%b", "night")
    assert "autoresearch experiment 10: val_bpb" in body and "sigma" in body
    assert git(run.path, "show", "night:train.py") == series.final
    assert run.foreign_changes() == []  # the run's tree and index were not touched
    with pytest.raises(ReviewError, match="already has a branch"):
        write_branch(series, "night")

    user = tmp_path / "mine"
    user.mkdir()
    git(user, "init", "-q", "-b", "main")
    (user / "README").write_text("mine\n")
    git(user, "add", "README")
    git(user, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "mine")
    commits = write_branch(series, "from-run", user, "model/train.py")
    assert len(commits) == 4  # the baseline first (the repository had no such file), then one per change
    assert git(user, "show", "from-run:model/train.py") == series.final
    assert git(user, "log", "--format=%s", "from-run").splitlines()[-2].startswith("model/train.py: the baseline")
    assert git(user, "status", "--porcelain") == ""


def test_a_change_that_needs_a_rejected_one_is_a_conflict_and_nothing_is_written(run: RunDir, tmp_path: Path) -> None:
    mark(run, 1, "reject")  # both 1 and 8 change MATRIX_LR: 8's diff removes 1's line
    mark(run, 8, "accept")
    with pytest.raises(ExportConflict, match=r"experiment 8 .* without experiment\(s\) 1 \(reject\)"):
        build(run)
    result = CliRunner().invoke(main, ["export", str(run.path), "--patch", str(tmp_path / "x.patch")])
    assert result.exit_code == 1 and "Nothing was exported" in result.output
    assert not (tmp_path / "x.patch").exists()
    # a neighbour of a rejected change still applies (the constants are adjacent lines)
    mark(run, 8, "unreviewed")
    mark(run, 2, "accept")
    assert len(build(run).steps) == 1


def test_revert_without_an_engine_is_made_at_once(run: RunDir) -> None:
    ledger = Ledger(run.path)
    before = ledger.best()
    message = request_revert(run, 37)  # the latest keep: its parent's script, whose figures are known
    assert "experiment 37 reverted" in message
    ledger.reload()
    rev = ledger.best()
    assert rev.kind == "revert" and rev.reverts == 37 and rev.parent == before.commit
    parent = ledger.experiment(21)
    assert rev.val_bpb == parent.val_bpb and "experiment 21, its figures" in rev.reason
    assert run.head() == rev.commit and run.script.read_text() == script_at(run, parent.commit)
    assert ledger.experiment(37).reverted_by == rev.index
    with pytest.raises(ReviewError, match="already reverted"):
        request_revert(run, 37)
    # a change in the middle: a new script nobody measured: the best waits for the engine to measure it
    rev2 = apply_revert(run, ledger, 10)
    assert rev2.val_bpb is None and "to be measured" in rev2.reason
    assert "UNEMBED_LR" in git(run.path, "show", "--format=", rev2.commit)
    assert ledger.best().index == rev2.index and run.foreign_changes() == []
    # reverted changes are left out of an export
    assert 10 not in [s.change.index for s in build(run, "all-kept").steps]
    # one whose line a later kept change rewrote (4 and 11 both set WEIGHT_DECAY): refused, nothing changed
    head = run.head()
    with pytest.raises(ReviewError, match=r"later kept change\(s\) 11 rewrote its lines"):
        apply_revert(run, ledger, 4)
    assert run.head() == head and ledger.best().index == rev2.index


def test_revert_while_an_engine_runs_is_queued(run: RunDir) -> None:
    lock = RunLock(run)
    lock.acquire()  # stands for the engine
    try:
        message = request_revert(run, 10)
    finally:
        lock.release()
    assert "queued" in message
    [sent] = control.pending(run.state)
    assert sent["command"] == "revert" and sent["index"] == 10
    # the engine takes it (recorded as queued with its arguments): a request that survives a restart
    ledger = Ledger(run.path)
    ledger.append(ControlTaken(command="revert", id=sent["id"], outcome="queued", args={"index": 10}))
    assert [(r.command, r.index) for r in Ledger(run.path, writable=False).requests()] == [("revert", 10)]
    apply_revert(run, ledger, 10, request=sent["id"])
    assert Ledger(run.path, writable=False).requests() == []


def test_notes_are_added_listed_and_removed(run: RunDir) -> None:
    a = notes.add(run, "try a smaller batch")
    notes.add(run, "  stop touching\nthe optimizer ")
    assert [n.text for n in notes.notes(run)] == ["try a smaller batch", "stop touching the optimizer"]
    assert notes.remove(run, "1").id == a.id
    assert [n.text for n in notes.notes(run)] == ["stop touching the optimizer"]
    with pytest.raises(Exception, match="no note"):
        notes.remove(run, "nope")


def test_cli_review_export_note(run: RunDir, tmp_path: Path) -> None:
    cli = CliRunner()
    out = cli.invoke(main, ["review", str(run.path), "--accept", "1", "--accept", "2", "--reject", "4"])
    assert out.exit_code == 0, out.output
    listing = cli.invoke(main, ["review", str(run.path), "--list"]).output
    assert "accept" in listing and "reject" in listing and "(not better on test)" in listing
    assert "12 kept change(s), 9 unreviewed" in listing
    data = json.loads(cli.invoke(main, ["review", str(run.path), "--json"]).output)
    assert [d["index"] for d in data] == KEPT and data[0]["verdict"] == "accept"
    out = cli.invoke(main, ["export", str(run.path), "--branch", "accepted"])
    assert out.exit_code == 0 and "2 commit(s)" in out.output, out.output
    out = cli.invoke(main, ["export", str(run.path), "--patch", str(tmp_path / "all.patch"), "--all-kept"])
    assert out.exit_code == 0 and (tmp_path / "all.patch").exists(), out.output
    out = cli.invoke(main, ["note", str(run.path), "try a smaller batch"])
    assert out.exit_code == 0 and "1. [" in out.output
    out = cli.invoke(main, ["export", str(run.path)])
    assert out.exit_code == 2 and "--patch FILE or --branch NAME" in out.output


def test_a_revert_never_touches_work_the_engine_did_not_make(run: RunDir) -> None:
    run.script.write_text(run.script.read_text() + "\n# my own edit\n")
    with pytest.raises(ReviewError, match="holds work the engine did not make"):
        request_revert(run, 37)
    assert run.script.read_text().endswith("# my own edit\n")  # kept
    assert Ledger(run.path, writable=False).best().index == 37


def test_a_retest_updates_the_gain_and_its_confidence(run: RunDir) -> None:
    from autoresearch.engine.events import Remeasured, TrainingFinished

    before = {c.index: c for c in kept_changes(Ledger(run.path, writable=False))}[1]
    ledger = Ledger(run.path)
    parent_val = ledger.experiment(0).val_bpb
    ledger.append_many([TrainingFinished(index=1, seed=5, outcome="ok", val_bpb=parent_val - 0.001),
                        Remeasured(index=1, val_bpb=parent_val - 0.004, seeds=1)])
    after = {c.index: c for c in kept_changes(Ledger(run.path, writable=False))}[1]
    assert after.seeds == before.seeds + 1 and after.delta == pytest.approx(-0.004)
    assert after.confidence == pytest.approx(0.004 / 0.0007)


def test_branch_in_an_empty_repository_and_in_a_subfolder(run: RunDir, tmp_path: Path) -> None:
    mark(run, 1, "accept")
    series = build(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    assert len(write_branch(series, "night", empty)) == 2  # the baseline, then the change
    assert git(empty, "show", "night:train.py") == series.final
    mono = tmp_path / "mono"
    (mono / "models" / "gpt").mkdir(parents=True)
    git(mono, "init", "-q", "-b", "main")
    script = mono / "models" / "gpt" / "train.py"
    script.write_text(series.baseline)
    script.chmod(0o755)
    git(mono, "add", ".")
    git(mono, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "mine")
    assert len(write_branch(series, "night", mono / "models", "gpt/train.py")) == 1  # already the baseline
    assert git(mono, "show", "night:models/gpt/train.py") == series.final
    assert git(mono, "ls-tree", "night", "models/gpt/train.py").split()[0] == "100755"
