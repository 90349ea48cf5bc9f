"""`autoresearch report`: a run directory (the recorded night of fixture_run) and upstream's results.tsv, through
the engine's report module and through the CLI. Real components: a real run directory with its git repository
and ledger, the real reducer, real matplotlib writing a real PNG."""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from autoresearch.cli import main
from autoresearch.engine.events import (Decision, ExperimentStarted, NoiseEstimated, RunStarted, Stopped,
                                        TrainingFinished, TrainingStarted)
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.report import build_report, format_markdown, tsv_source, write_report
from autoresearch.engine.review import kept_changes, request_revert
from autoresearch.engine.rundir import RunDir, RunError, RunLock

sys.path.insert(0, str(Path(__file__).parent))
import fixture_run  # noqa: E402

UPSTREAM_TSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "upstream-mar8-results.tsv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """The recorded night: 40 decided experiments and one still open (its confirmation seed running)."""
    return fixture_run.build(tmp_path_factory.mktemp("runs") / "mar8")


def test_report_of_a_run_matches_its_ledger(night: RunDir, tmp_path: Path) -> None:
    ledger = Ledger(night.path, writable=False)
    exps = ledger.experiments()
    decided = [e for e in exps if e.status is not None]
    kept = [e for e in exps if e.status == "keep" and e.kind == "agent"]
    best_val = min(e.val_bpb for e in exps if e.status == "keep")
    report = build_report(night)
    assert len(report.decided) == len(decided) == 40 and len(report.kept) == len(kept)
    assert report.best is not None and report.best.val_bpb == best_val

    files = write_report(report, tmp_path / "out")
    md = files.markdown.read_text()
    assert md.startswith("# autoresearch report: mar8\n")
    assert "2026-03-08 22:00 – " in md and "NVIDIA H100 80GB HBM3" in md and "datacenter-cuda" in md
    assert "300 s of training per experiment" in md and "ollama:qwen2.5-coder:14b" in md and "| Policy | noise |" in md
    assert "- **Experiments:** 40 decided, 1 still open" in md
    assert f"- **Kept:** {len(kept) + 1} (the baseline and {len(kept)} improvements)" in md
    assert f"- **Discarded:** {sum(e.status == 'discard' for e in exps)}" in md
    assert f"- **Best val_bpb:** {best_val:.6f} (experiment {report.best.index}" in md
    assert "- **Baseline val_bpb:** 0.997900" in md
    assert f"{best_val - 0.9979:+.6f} vs the baseline" in md
    # the noise floor and how many kept changes cleared it, from the review's own figures
    changes = kept_changes(ledger)
    clear = sum(1 for c in changes if c.confidence is not None and c.confidence >= 2)
    assert "σ = 0.000700" in md and f"{clear} of {len(kept)} kept improvements are at least 2σ" in md
    assert re.search(r"- \*\*Pace:\*\* \d+\.\d experiments per hour", md)
    assert "### Where the time went" in md and "| training (the harness's clock) |" in md
    assert "| evaluation | not recorded | |" in md  # the fixture's trainings carry no evaluation seconds: said so

    # every experiment in the results table, the open one with its live status
    table = [ln for ln in md.split("## Results")[1].split("## Kept changes")[0].splitlines() if re.match(r"\| \d+ \|", ln)]
    assert len(table) == len(exps) == 41
    assert table[0].startswith("| 0 | keep (baseline) | 0.997900 | - | baseline |")
    assert table[-1].startswith("| 40 | interrupted? |")  # open, no engine holds the run
    assert "| 3 | crash | - | - | add 5% warmup |" in md

    # each kept change with its figures and its diff of train.py, the same as the review shows
    section = md.split("## Kept changes")[1].split("## Failures")[0]
    for n, c in enumerate(changes, 1):
        head = f"### {n}. Experiment {c.index}: {c.description}"
        assert head in section
        body = section.split(head)[1].split("### ")[0]
        assert f"| {c.commit[:7]} | {c.val_bpb:.6f} | {c.delta:+.6f} | {c.confidence:.1f}σ |" in body
        assert f"| {c.seeds} | unreviewed |" in body
        assert "```diff\n--- a/train.py (" in body and f"+++ b/train.py ({c.commit[:7]})" in body
        assert re.search(r"^-\w+ = .*\n\+\w+ = ", body, re.M), body  # the knob the fixture changed, old and new
    assert section.count("```diff") == len(changes)

    # failures by cause, with counts and the experiments
    failures = md.split("## Failures")[1]
    assert "| crash | AttributeError: 'GPT' object has no attribute 'embedding' | 3 | 3, 15, 30 |" in failures
    assert "| oom | ran out of memory | 1 | 9 |" in failures
    assert "| nan | training loss is nan at step 412: the run diverged | 1 | 12 |" in failures
    assert "| interrupted | skipped by the user | 1 | 26 |" in failures

    assert "![progress](progress.png)" in md
    width, height = png_size(files.plot)
    assert 1200 <= width <= 2400 and 600 <= height <= 1200 and width > height
    assert files.plot.parent == files.markdown.parent and files.html is None


def test_default_folder_is_inside_the_state_directory_and_the_run_is_untouched(night: RunDir) -> None:
    events = night.state / "events.jsonl"
    before = hashlib.sha256(events.read_bytes()).hexdigest()
    head = night.head()
    files = write_report(night)  # a RunDir: built and written in one call, to the default folder
    assert files.directory == night.state / "report"
    assert files.markdown.exists() and files.plot.exists()
    assert subprocess.run(["git", "-C", str(night.path), "status", "--porcelain"], capture_output=True,
                          text=True).stdout == ""
    assert night.head() == head and hashlib.sha256(events.read_bytes()).hexdigest() == before


def test_report_while_the_engine_runs(night: RunDir, tmp_path: Path) -> None:
    lock = RunLock(night)
    lock.acquire()  # what a running engine holds; the report must neither wait for it nor fail
    try:
        report = build_report(night)
        files = write_report(report, tmp_path / "live")
    finally:
        lock.release()
    md = files.markdown.read_text()
    assert report.running and "still running this run: this report is a snapshot" in md
    assert "| 40 | confirming |" in md  # the engine is confirming experiment 40 with a second seed


def test_reverted_change_and_html(night: RunDir, tmp_path: Path) -> None:
    run = RunDir(shutil.copytree(night.path, tmp_path / "mar8-copy", symlinks=True))
    last = kept_changes(Ledger(run.path, writable=False))[-1]
    request_revert(run, last.index)  # no engine runs it: made at once (a kept experiment of kind revert)
    report = build_report(run)
    files = write_report(report, tmp_path / "out", html=True)
    md = files.markdown.read_text()
    revert = next(r for r in report.rows if r.kind == "revert")
    assert f"| {last.index} | keep (reverted by {revert.index}) |" in md
    assert f"| {revert.index} | keep (revert of {last.index}) |" in md
    assert f"reverted by experiment {revert.index}" in md
    assert report.best is not None and report.best.index == revert.index
    assert f"- **Lowest kept val_bpb:** {last.val_bpb:.6f} (experiment {last.index}, reverted later" in md
    page = files.html.read_text() if files.html else ""
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64,iVBOR" in page
    assert "<h2>Kept changes</h2>" in page and '<span class="add">+' in page and "progress.png" not in page
    png_size(files.plot)


@pytest.mark.parametrize("waited", [0.0, 60.0])
def test_time_split_from_recorded_timing(tmp_path: Path, waited: float) -> None:
    """A small run whose events carry the figures a current engine records: harness training and scoring seconds,
    each decision's agent / train / engine seconds, and (``waited``) a wait for a quiet machine inside it."""
    run = RunDir.create(tmp_path / "timed", "print('train')\n", {"backend": "torch", "policy": "greedy",
                        "profile": {"name": "cpu", "time_budget": 300, "device": "cpu"}}, {})
    start = datetime(2026, 3, 8, 22, 0, tzinfo=timezone.utc)

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    metrics = {"training_seconds": 300.0, "scoring_seconds": 20.0}
    head = run.head()
    Ledger(run.path).append_many([
        RunStarted(pid=1, host="box", ts=at(0)),
        ExperimentStarted(index=0, kind="baseline", commit=head, description="baseline", ts=at(1)),
        TrainingStarted(index=0, log="logs/0000.log", purpose="baseline", ts=at(2)),
        TrainingFinished(index=0, outcome="ok", val_bpb=1.5, metrics=metrics, wall_seconds=340.0, ts=at(342)),
        NoiseEstimated(sigma=0.01, dof=2, source="repeats", ts=at(343)),
        Decision(index=0, status="keep", val_bpb=1.5, reason="baseline", ts=at(344)),
        ExperimentStarted(index=1, kind="agent", parent=head, commit=head, description="try a thing", ts=at(405)),
        TrainingStarted(index=1, log="logs/0001.log", ts=at(406)),
        TrainingFinished(index=1, outcome="ok", val_bpb=1.6, metrics=metrics, wall_seconds=340.0, ts=at(746)),
        Decision(index=1, status="discard", val_bpb=1.6, delta=0.1, reason="worse",
                 timing={"agent_seconds": 60.0, "train_seconds": 340.0, "engine_seconds": 5.0,
                         **({"waited_seconds": waited} if waited else {})}, ts=at(750)),
        Stopped(reason="stopped by the user", ts=at(900)),
    ])
    md = format_markdown(build_report(run))
    # engine time 900 s: training 600 s, evaluation 40 s, agent 60 s, overhead 2 x 20 s start-up + 5 s, other 155 s
    assert "| part | minutes | share |" in md  # a run under 2 hours is told in minutes
    assert "| training (the harness's clock) | 10.0 | 66.7 % |" in md
    assert "| evaluation | 0.7 | 4.4 % |" in md
    assert "| agent (proposing, repairing) | 1.0 | 6.7 % |" in md
    assert "| overhead (start-up, compiling, crashed runs, the engine) | 0.8 | 5.0 % |" in md
    if waited:  # the machine's time, told apart from the engine's overhead and from the idle rest
        assert "| waiting for a quiet machine or disk space | 1.0 | 6.7 % |" in md
        assert "| other (idle, paused, waiting for the model, not recorded) | 1.6 | 10.6 % |" in md
    else:
        assert "waiting for a quiet machine" not in md
        assert "| other (idle, paused, waiting for the model, not recorded) | 2.6 | 17.2 % |" in md
    assert "**15.0**" in md and "- Note:" not in md
    assert "- **Pace:** 8.0 experiments per hour (2 in 15 min of engine time)" in md
    assert "2026-03-08 22:00 – 22:15 UTC (15 min)" in md
    assert "## Kept changes\n\nNone yet" in md and "## Failures\n\nNone" in md


def test_a_training_stopped_early_is_told_with_the_time_it_did_not_spend(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "early", "print('train')\n", {"backend": "torch", "policy": "noise",
                        "profile": {"name": "cpu", "time_budget": 300, "device": "cpu"}}, {})
    head = run.head()
    full = {"training_seconds": 300.0, "scoring_seconds": 20.0, "loss_curve": [[0.5, 5.0], [0.99, 4.0]]}
    stopped = {"training_seconds": 120.0, "time_budget": 300.0, "loss_curve": [[0.2, 6.0], [0.4, 5.9]]}
    reason = "stopped early at 40% (projected 1.9000, best 1.5000, margin 0.1000)"
    Ledger(run.path).append_many([
        RunStarted(pid=1, host="box"),
        ExperimentStarted(index=0, kind="baseline", commit=head, description="baseline"),
        TrainingFinished(index=0, outcome="ok", val_bpb=1.5, metrics=full, wall_seconds=340.0),
        Decision(index=0, status="keep", val_bpb=1.5, reason="baseline"),
        ExperimentStarted(index=1, kind="agent", parent=head, commit=head, description="freeze everything"),
        TrainingFinished(index=1, outcome="early_stop", val_bpb=None, metrics=stopped, wall_seconds=130.0, reason=reason),
        Decision(index=1, status="discard", val_bpb=None, reason=reason,
                 timing={"agent_seconds": 10.0, "train_seconds": 130.0, "engine_seconds": 1.0}),
        Stopped(reason="stopped by the user"),
    ])
    md = format_markdown(build_report(run))
    assert "| 1 | discard | stopped at 40% | - | freeze everything |" in md
    # stopped at 40% after 120 s: 180 s of its budget not spent; it was not evaluated (no note says it lacks a time)
    assert "1 training(s) were stopped early as hopeless, at 40% of the budget on average: 3 min of training" in md
    assert "evaluation time is not recorded" not in md


def test_report_of_upstreams_results_tsv(tmp_path: Path) -> None:
    source = tsv_source(str(UPSTREAM_TSV))
    assert source == UPSTREAM_TSV
    report = build_report(source)
    files = write_report(report, tmp_path / "up")
    md = files.markdown.read_text()
    assert len(report.rows) == 126 and "- **Experiments:** 126\n" in md
    assert "- **Kept:** 23 (the baseline and 22 improvements)" in md and "- **Discarded:** 102" in md
    assert "- **Best val_bpb:** 0.969686 (experiment 118, 438a26e)" in md
    assert "- **Failures:** 1 (1 crash)" in md
    # what a results.tsv cannot tell is said in words
    assert "Read from a results.tsv alone" in md and "no noise estimate" in md
    assert "dates not recorded (a results.tsv has no timestamps)" in md and "- **Pace:** unknown" in md
    assert md.count("_no diff: a results.tsv holds no code (`git show ") == 22 and "```diff" not in md
    assert "| crash | not recorded in a results.tsv; the changes tried: batch 131K (assert fail: not divisible" in md
    assert "| 88 | discard | 3.215849 |" in md  # the outlier is in the table (the plot clips it)
    width, height = png_size(files.plot)
    assert (width, height) == (1600, 800)


def test_cli_report(night: RunDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    out = cli.invoke(main, ["report", str(UPSTREAM_TSV)])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "report-upstream-mar8-results"
    assert f"wrote report.md, progress.png in {folder}" in out.output
    assert "upstream-mar8-results: 126 experiments, 22 kept improvements, best val_bpb 0.969686" in out.output
    assert (folder / "report.md").exists() and (folder / "progress.png").exists()

    out = cli.invoke(main, ["report", "--runs-dir", str(night.path.parent), "--out", str(tmp_path / "r"), "--html"])
    assert out.exit_code == 0, out.output  # no RUN: the most recent run in --runs-dir
    assert f"wrote report.md, progress.png, report.html in {tmp_path / 'r'}" in out.output
    assert "mar8: 40 experiments" in out.output and (tmp_path / "r" / "report.html").exists()

    for args, words in ((["report", str(tmp_path / "missing.tsv")], "no such file"),
                        (["report", "no-such-run", "--runs-dir", str(tmp_path)], "no run 'no-such-run'")):
        out = cli.invoke(main, args)
        assert out.exit_code == 1 and out.output.startswith("error: ") and words in out.output, out.output
        assert out.output.strip().count("\n") == 0  # one line, no traceback


def test_cli_errors_not_a_table_and_no_experiments(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.tsv"
    garbage.write_text("hello\tworld\nsome\tthing\n")
    binary = tmp_path / "blob.tsv"
    binary.write_bytes(bytes(range(256)) * 4)
    empty_run = RunDir.create(tmp_path / "runs" / "fresh", "print('train')\n", {"profile": {"name": "cpu"}}, {})
    cli = CliRunner()
    for args, words in ((["report", str(garbage)], "is not a results table"),
                        (["report", str(binary)], "is not a results table"),
                        (["report", "fresh", "--runs-dir", str(tmp_path / "runs")], "has no experiments yet")):
        out = cli.invoke(main, args)
        assert out.exit_code == 1 and out.output.startswith("error: ") and words in out.output, out.output
        assert out.output.strip().count("\n") == 0
    with pytest.raises(RunError, match="no experiments yet"):
        build_report(empty_run)


def test_cli_in_a_real_subprocess(night: RunDir, tmp_path: Path) -> None:
    """`python -m autoresearch report RUN/.autoresearch/results.tsv`: a run's own results.tsv reports the run."""
    out = subprocess.run([sys.executable, "-m", "autoresearch", "report", str(night.state / "results.tsv"),
                          "--out", str(tmp_path / "sub")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"in {tmp_path / 'sub'}" in out.stdout and "mar8: 40 experiments" in out.stdout
    assert "```diff" in (tmp_path / "sub" / "report.md").read_text()  # the run's ledger and git, not the tsv alone
