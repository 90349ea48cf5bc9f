"""The research loop for real: git run directories, real CPU training, a scripted agent (test double)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.resources import template_path
from autoresearch.backends.knobs import set_knobs
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.results import read_results_tsv
from autoresearch.engine.loop import Engine, EngineOptions
from autoresearch.engine.rundir import RunDir, RunError, RunLock
from autoresearch.harness.prepare import Prepared
from autoresearch.harness.session import HarnessConfig

sys.path.insert(0, str(Path(__file__).parent))
from scripted_agent import ScriptedAgent  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout

TEMPLATE = template_path("torch").read_text()
# a deliberately weak baseline: learning rates far too low, so a good change is unmistakable
WEAK = set_knobs(TEMPLATE, {"MATRIX_LR": 0.0005, "EMBED_LR": 0.005, "UNEMBED_LR": 0.0001})
FIX_LRS = {"description": "restore sensible learning rates",
           "replace": [["MATRIX_LR = 0.0005", "MATRIX_LR = 0.04"], ["EMBED_LR = 0.005", "EMBED_LR = 0.6"],
                       ["UNEMBED_LR = 0.0001", "UNEMBED_LR = 0.004"]]}
FREEZE = {"description": "freeze almost everything (learning rates 1e-7)",
          "replace": [["MATRIX_LR = 0.04", "MATRIX_LR = 1e-07"], ["EMBED_LR = 0.6", "EMBED_LR = 1e-07"],
                      ["UNEMBED_LR = 0.004", "UNEMBED_LR = 1e-07"]]}
CRASH = {"description": "a typo", "replace": [["x = x0 = rms_norm(self.embed(idx))", "x = x0 = rms_norm(self.embedding(idx))"]]}
SNEAKY = {"description": "read the metrics path", "replace": [["import math\n", "import math\nimport subprocess\n"]]}


def make_run(tmp_path: Path, data: Prepared, source: str = WEAK, *, max_steps: int = 15, policy: str = "noise",
             name: str = "run", early_stop: str = "off") -> RunDir:
    harness = HarnessConfig(data_dir=str(data.directory), seq_len=128, vocab_size=data.manifest.vocab_size,
                            time_budget=120, eval_tokens=2**13, device="cpu", max_steps=max_steps,
                            eval_batch_size=16, test_tokens=2**12, progress_interval=1.0)
    config = {"backend": "torch", "dataset": "stdlib", "policy": policy, "seed": 0, "deadline_seconds": 120,
              "manifest_digest": data.manifest.digest, "data_dir": str(data.directory), "profile": {"name": "test", "time_budget": 120, "device": "cpu"},
              "hardware_summary": "test machine", "early_stop": early_stop}  # off: the full trainings these tests measure
    return RunDir.create(tmp_path / name, source, config, dataclasses.asdict(harness))


def engine_for(run: RunDir, edits: list[dict], max_experiments: int, **opts: object) -> Engine:
    return Engine(run, ScriptedAgent(edits), EngineOptions(max_experiments=max_experiments, **opts), log=lambda s: None)


def test_keep_and_discard(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    root = run.head()
    reason = engine_for(run, [FIX_LRS, FREEZE], max_experiments=3).run()
    assert reason == "3 experiment(s) done"
    exps = Ledger(run.path).experiments()
    assert [e.status for e in exps] == ["keep", "keep", "discard"]
    base, good, bad = exps
    assert len(base.trainings) == 2  # the noise policy's baseline seeds
    assert good.delta < 0 and bad.delta > 0
    assert good.test_bpb is not None and bad.test_bpb is None
    # git: the branch holds the kept change; the discarded one is reset away but kept under its ref
    assert run.head() == good.commit != root
    assert "MATRIX_LR = 0.04" in run.script.read_text()
    assert run.foreign_changes() == []
    assert "1e-07" in run.diff(bad.commit)
    # results.tsv: upstream columns first, one row per experiment
    rows = read_results_tsv(run.state / "results.tsv")
    assert [r.status for r in rows] == ["keep", "keep", "discard"]
    assert rows[1].description == "restore sensible learning rates"
    noise = [e for e in Ledger(run.path).events() if e["event"] == "noise_estimate"]
    assert noise and noise[-1]["sigma"] > 0


def test_a_hopeless_change_is_stopped_early_and_a_new_schedule_is_not_judged(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE, max_steps=40, early_stop="safe")
    new_schedule = {"description": "freeze, with a longer warmdown",
                    "replace": FREEZE["replace"] + [["WARMDOWN_FRAC = 0.5", "WARMDOWN_FRAC = 0.8"]]}
    lines: list[str] = []
    engine = Engine(run, ScriptedAgent([FREEZE, new_schedule]), EngineOptions(max_experiments=3), log=lines.append)
    assert engine.run() == "3 experiment(s) done"
    base, frozen, other = Ledger(run.path).experiments()
    assert all(t.metrics.get("loss_curve") for t in base.trainings)  # the references
    # the frozen model's loss stays near ln(vocab) while the baseline's falls: stopped, a discard without a score
    assert frozen.status == "discard" and frozen.val_bpb is None and frozen.test_bpb is None
    assert frozen.reason.startswith("stopped early at") and "projected" in frozen.reason
    (t,) = frozen.trainings
    assert t.outcome == "early_stop" and t.val_bpb is None
    assert 12 <= t.metrics["num_steps"] < 40  # not before 30% of the 40 steps; well before the end
    assert any(line.startswith("[exp 1] DISCARD stopped early at") for line in lines)
    assert run.head() == base.commit  # reset away, as any discard
    # a change of the LR schedule makes early loss incomparable: trained to the end and scored
    assert other.status == "discard" and other.val_bpb is not None and other.trainings[0].metrics["num_steps"] == 40
    assert any("not judged for early stopping: its schedule differs from the baseline's (WARMDOWN_FRAC)" in line
               for line in lines)
    rows = read_results_tsv(run.state / "results.tsv")
    assert [r.status for r in rows] == ["keep", "discard", "discard"] and rows[1].val_bpb is None
    from autoresearch.engine.status import format_status, run_status
    table = format_status(run_status(run)).splitlines()
    assert any(line.split()[:4] == ["1", frozen.commit[:7], "discard", "stop"] for line in table), table


def test_the_next_proposal_is_written_while_training_and_rebased_onto_a_keep(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    window = {"description": "a shorter sliding window", "replace": [["SHORT_WINDOW = 128", "SHORT_WINDOW = 64"]]}
    agent = ScriptedAgent([FIX_LRS, window])
    lines: list[str] = []
    engine = Engine(run, agent, EngineOptions(max_experiments=3, propose_ahead="on"), log=lines.append)
    assert engine.run() == "3 experiment(s) done"
    base, fixed, shorter = Ledger(run.path).experiments()
    assert fixed.status == "keep" and shorter.description == "a shorter sliding window"
    assert agent.calls == 2  # the second was asked for while exp 1 trained, on the baseline's script; none after the last
    assert "the proposal prepared during the last training was rebased onto the new best" in lines
    script = subprocess.run(["git", "show", f"{shorter.commit}:train.py"], cwd=run.path, capture_output=True, text=True).stdout
    assert "SHORT_WINDOW = 64" in script and "MATRIX_LR = 0.04" in script  # the keep's change and its own
    assert shorter.parent == fixed.commit
    timing = {e["index"]: e.get("timing") or {} for e in Ledger(run.path).events() if e["event"] == "decision"}
    assert "agent_ahead_seconds" not in timing[1] and timing[2]["agent_ahead_seconds"] >= 0
    assert timing[2]["agent_seconds"] < 5  # it was ready: nothing to wait for


def test_crash_and_rejected_proposals_cost_no_best(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE)
    agent = ScriptedAgent([CRASH, SNEAKY, FREEZE])
    Engine(run, agent, EngineOptions(max_experiments=3, policy="greedy", max_repairs=1), log=lambda s: None).run()
    ledger = Ledger(run.path)
    exps = ledger.experiments()
    assert [e.status for e in exps] == ["keep", "crash", "discard"]
    assert "AttributeError" in (run.state / exps[1].trainings[0].log).read_text()
    rejected = [e for e in ledger.events() if e["event"] == "agent_error"]
    assert len(rejected) == 1 and "subprocess" in rejected[0]["message"]
    assert "AttributeError" in agent.repairs[0]  # the crash's traceback went back to the agent (it declined)
    assert "subprocess" in agent.repairs[1]  # so did the integrity report
    assert run.head() == exps[0].commit and run.foreign_changes() == []


def test_an_agent_that_keeps_failing_stops_the_run(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE)
    engine = Engine(run, ScriptedAgent([SNEAKY]), EngineOptions(max_experiments=5, policy="greedy", max_repairs=0,
                                                                max_agent_failures=3), log=lambda s: None)
    reason = engine.run()
    assert "3 unusable proposals in a row" in reason
    ledger = Ledger(run.path)
    assert [e.status for e in ledger.experiments()] == ["keep"]  # no training spent on the bad proposals
    assert len([e for e in ledger.events() if e["event"] == "agent_error"]) == 3


def test_two_engines_on_one_run_are_refused(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    lock = RunLock(run)
    lock.acquire()
    try:
        with pytest.raises(RunError, match="another engine"):
            engine_for(run, [FIX_LRS], 1).run()
        assert RunLock(run).is_held()
    finally:
        lock.release()
    assert not RunLock(run).is_held()


def test_dirty_tree_is_refused(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    run.script.write_text(run.script.read_text() + "\n# my own edit\n")
    with pytest.raises(RunError, match="changes the engine did not make"):
        engine_for(run, [FIX_LRS], 1).run()
    assert "# my own edit" in run.script.read_text()  # nothing of the user's was thrown away


def test_a_users_commit_is_never_thrown_away(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    run.script.write_text(run.script.read_text() + "\n# my idea\n")
    run.repo.index.add(["train.py"])
    mine = run.repo.index.commit("my own idea").hexsha
    with pytest.raises(RunError, match="commit the engine did not make"):
        engine_for(run, [FIX_LRS], 1).run()
    assert run.head() == mine and "# my idea" in run.script.read_text()


def test_a_shard_changed_in_place_with_its_stamp_kept_is_found_at_start(tmp_path: Path, stdlib_small: Prepared) -> None:
    import shutil as sh

    data = tmp_path / "data"
    sh.copytree(stdlib_small.directory, data)
    from autoresearch.harness.manifest import verify

    verify(data)  # the per-training check leaves its stamp (size, mtime, inode)
    shard = data / stdlib_small.manifest.splits["val"][0].file
    st = shard.stat()
    with open(shard, "r+b") as f:  # same size, same inode, same mtime: the stamp check cannot see it
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    verify(data)  # (the quick check passes: that is the hole)
    run = make_run(tmp_path, stdlib_small)
    cfg = json.loads(run.config_path.read_text())
    cfg["data_dir"] = str(data)
    run.config_path.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="does not match its checksum"):
        engine_for(run, [FIX_LRS], 1).run()


def test_changed_data_is_refused(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small)
    cfg = json.loads(run.config_path.read_text())
    cfg["manifest_digest"] = "0" * 64
    run.config_path.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="not the data this run was created with"):
        engine_for(run, [FIX_LRS], 1).run()
    cfg["data_dir"] = str(tmp_path / "gone")
    run.config_path.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="prepare"):
        engine_for(run, [FIX_LRS], 1).run()


def _cli_env(tmp_path: Path, edits: list[dict]) -> dict[str, str]:
    (tmp_path / "edits.json").write_text(json.dumps(edits))
    env = dict(os.environ)
    env["AR_SCRIPTED_EDITS"] = str(tmp_path / "edits.json")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _events(run: RunDir) -> list[dict]:
    try:
        return [json.loads(line) for line in (run.state / "events.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def test_kill_9_mid_training_then_resume(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, max_steps=400)  # long enough to be killed mid-training
    env = _cli_env(tmp_path, [FIX_LRS])
    argv = [sys.executable, "-m", "autoresearch.cli", "run", "--headless", "--tag", "run", "--runs-dir", str(tmp_path),
            "--agent", "plugin:scripted_agent:make", "--max-experiments", "2"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: first.poll() is not None or ((run.state / "training.pid").exists()
              and (run.state / "logs" / "0000.log").exists() and "step" in (run.state / "logs" / "0000.log").read_text()))
    assert first.poll() is None, first.stdout.read()
    orphan = json.loads((run.state / "training.pid").read_text())["pid"]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert any(e["event"] == "experiment_started" for e in _events(run))
    assert not any(e["event"] in ("decision", "experiment_interrupted") for e in _events(run))

    # resume with a shorter training (the harness config is the run's own: edit it as a user could)
    cfg = json.loads(run.harness_path.read_text())
    cfg["max_steps"] = 12
    run.harness_path.write_text(json.dumps(cfg))
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "recorded as interrupted" in second.stdout
    import psutil

    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    exps = Ledger(run.path).experiments()
    assert [e.status for e in exps] == ["interrupted", "keep", "keep"]
    assert [e.kind for e in exps] == ["baseline", "baseline", "agent"]
    assert run.head() == exps[-1].commit and run.foreign_changes() == []
    rows = read_results_tsv(run.state / "results.tsv")
    assert [r.status for r in rows] == ["interrupted", "keep", "keep"]
    status = subprocess.run([sys.executable, "-m", "autoresearch.cli", "status", "run", "--runs-dir", str(tmp_path), "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["state"] == "stopped"
    assert [x["status"] for x in report["experiments"]] == ["interrupted", "keep", "keep"]
    for key in ("index", "commit", "status", "val_bpb", "delta", "description", "training_seconds", "memory_gb"):
        assert key in report["experiments"][-1]


def test_stop_now_from_another_shell(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, max_steps=400)
    env = _cli_env(tmp_path, [FIX_LRS])
    argv = [sys.executable, "-m", "autoresearch.cli", "run", "--headless", "--tag", "run", "--runs-dir", str(tmp_path)]
    engine = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: engine.poll() is not None or (run.state / "training.pid").exists())
    assert engine.poll() is None, engine.stdout.read()
    out = subprocess.run([sys.executable, "-m", "autoresearch.cli", "stop", "run", "--now", "--runs-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert "will stop now" in out.stdout
    log, _ = engine.communicate(timeout=60)
    assert engine.returncode == 0, log
    exps = Ledger(run.path).experiments()
    assert [e.status for e in exps] == ["interrupted"]
    assert not (run.state / "training.pid").exists()
    assert "stopped: stopped by the user" in log


def test_sigterm_stops_after_the_experiment(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE, max_steps=40, policy="greedy")
    env = _cli_env(tmp_path, [FIX_LRS])
    argv = [sys.executable, "-m", "autoresearch.cli", "run", "--headless", "--tag", "run", "--runs-dir", str(tmp_path)]
    engine = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: engine.poll() is not None or (run.state / "training.pid").exists())
    engine.send_signal(signal.SIGHUP)  # ignored in headless mode (an SSH drop)
    engine.send_signal(signal.SIGTERM)
    log, _ = engine.communicate(timeout=120)
    assert engine.returncode == 0, log
    assert "SIGTERM: stopping after the current experiment" in log
    assert [e.status for e in Ledger(run.path).experiments()] == ["keep"]  # the baseline finished, then it stopped


def test_low_disk_pauses_instead_of_failing(tmp_path: Path, stdlib_small: Prepared) -> None:
    import threading

    from autoresearch.engine import control

    run = make_run(tmp_path, stdlib_small)
    lines: list[str] = []
    engine = Engine(run, ScriptedAgent([FIX_LRS]), EngineOptions(max_experiments=1, disk_floor_gb=1e9, poll_interval=0.1),
                    log=lines.append)
    threading.Timer(1.0, lambda: control.send(run.state, "stop")).start()
    assert engine.run() == "stopped by the user after the experiment"
    assert any("paused: only" in line and "Free some space" in line for line in lines)
    assert Ledger(run.path).experiments() == []  # nothing was started, nothing lost
    assert any(e["event"] == "paused" and "disk" in e["reason"] for e in Ledger(run.path).events())


def test_a_crashed_change_is_repaired_by_the_agent_and_trained_again(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE)
    typo = {**CRASH, "repair": [["self.embedding(idx)", "self.embed(idx)"], ["MATRIX_LR = 0.04", "MATRIX_LR = 0.03"]]}
    agent = ScriptedAgent([typo])
    Engine(run, agent, EngineOptions(max_experiments=2, policy="greedy"), log=lambda s: None).run()
    ledger = Ledger(run.path)
    base, exp = ledger.experiments()
    assert exp.status in ("keep", "discard") and exp.repairs == 1
    assert "AttributeError" in agent.repairs[0] and "Traceback" in agent.repairs[0]  # the agent saw the traceback
    assert [r.outcome for r in exp.superseded_trainings] == ["crash"] and [r.outcome for r in exp.trainings] == ["ok"]
    assert exp.earlier_sha256 and exp.earlier_sha256[0] != exp.script_sha256  # the crashed version stays a duplicate
    logs = [run.state / r.log for r in exp.superseded_trainings + exp.trainings]
    assert logs[0] != logs[1] and "AttributeError" in logs[0].read_text()  # the crashed version's log is kept
    assert exp.description == "a typo (repaired)"
    assert "MATRIX_LR = 0.03" in run.repo.git.show(f"{exp.commit}:train.py")
    repaired = [e for e in ledger.events() if e["event"] == "experiment_repaired"]
    assert len(repaired) == 1 and repaired[0]["commit"] == exp.commit and repaired[0]["after"] == "crash"
    rows = read_results_tsv(run.state / "results.tsv")
    assert rows[1].description == "a typo (repaired)" and rows[1].status == exp.status


def test_a_repair_that_crashes_again_ends_the_experiment_as_a_crash(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE)
    stubborn = {**CRASH, "repair": [["MATRIX_LR = 0.04", "MATRIX_LR = 0.041"]]}  # changes something, not the typo
    agent = ScriptedAgent([stubborn])
    Engine(run, agent, EngineOptions(max_experiments=2, policy="greedy", max_crash_repairs=1), log=lambda s: None).run()
    base, exp = Ledger(run.path).experiments()
    assert exp.status == "crash" and exp.repairs == 1
    assert [r.outcome for r in exp.superseded_trainings + exp.trainings] == ["crash", "crash"]
    assert len(agent.repairs) == 1  # bounded: one repair allowed
    assert run.head() == base.commit and run.foreign_changes() == []


FIX_MATRIX = {"description": "matrix learning rate up", "replace": [["MATRIX_LR = 0.0005", "MATRIX_LR = 0.04"]]}
FIX_EMBEDS = {"description": "embedding learning rates up",
              "replace": [["EMBED_LR = 0.005", "EMBED_LR = 0.6"], ["UNEMBED_LR = 0.0001", "UNEMBED_LR = 0.004"]]}


class _Reader(ScriptedAgent):
    """Records what the engine tells it, then has nothing to say (the run stops)."""

    def __init__(self) -> None:
        super().__init__([FIX_MATRIX])
        self.seen: list[object] = []

    def propose(self, ctx):  # type: ignore[no-untyped-def]
        from autoresearch.agent.base import AgentError

        self.seen.append(ctx)
        raise AgentError("nothing more to try")


def test_review_requests_are_carried_out_by_the_engine(tmp_path: Path, stdlib_small: Prepared) -> None:
    """A revert of a middle change (a script nobody measured), a re-test and a note, sent while no engine ran:
    the next engine re-tests, measures the new best before anything else, and the agent reads the note."""
    from autoresearch.engine import notes
    from autoresearch.engine.review import request_retest, request_revert

    run = make_run(tmp_path, stdlib_small, policy="greedy")  # one training per experiment: the test is about requests
    engine_for(run, [FIX_MATRIX, FIX_EMBEDS], max_experiments=3, policy="greedy").run()
    exps = Ledger(run.path).experiments()
    assert [e.status for e in exps] == ["keep", "keep", "keep"], [e.reason for e in exps]
    seeds_before = len(exps[2].ok_values)
    assert "queued" in request_retest(run, 2, seeds=1)
    assert "measures it when the run is resumed" in request_revert(run, 1)  # the middle one: a new script
    notes.add(run, "stop touching the optimizer")
    rev = Ledger(run.path).best()
    assert rev.kind == "revert" and rev.val_bpb is None
    assert "MATRIX_LR = 0.0005" in run.script.read_text() and "EMBED_LR = 0.6" in run.script.read_text()

    agent = _Reader()
    reason = Engine(run, agent, EngineOptions(max_experiments=1, max_agent_failures=1, policy="greedy"),
                    log=lambda s: None).run()
    assert "unusable proposals" in reason
    ledger = Ledger(run.path)
    assert len(ledger.experiment(2).ok_values) == seeds_before + 1  # the re-test
    best = ledger.best()
    assert best.index == rev.index and best.val_bpb is not None and len(best.ok_values) == 1  # measured first
    remeasured = [e for e in ledger.events() if e["event"] == "remeasured"]
    assert [e["index"] for e in remeasured] == [2, rev.index]
    assert ledger.requests() == []
    assert [c.notes for c in agent.seen] == [["stop touching the optimizer"]]
    assert agent.seen[0].best_val_bpb == best.val_bpb
    assert run.head() == best.commit and run.foreign_changes() == []


class _Slow(ScriptedAgent):
    """An agent that takes its time over its first proposal (a model that has stopped answering, for a while)."""

    def propose(self, ctx):  # type: ignore[no-untyped-def]
        if self.calls == 0:
            time.sleep(2.5)
        return super().propose(ctx)


def test_an_engine_that_makes_no_progress_records_a_stall(tmp_path: Path, stdlib_small: Prepared) -> None:
    from autoresearch.engine.status import format_status, run_status
    from autoresearch.engine.view import RunView

    run = make_run(tmp_path, stdlib_small)
    lines: list[str] = []
    seen: list[object] = []
    engine = Engine(run, _Slow([FIX_LRS]), EngineOptions(max_experiments=2, baseline_seeds=1, stall_seconds=1.0,
                                                         stall_check_seconds=0.1), log=lines.append)

    def look(ev: dict) -> None:  # what a client sees at the moment the stall is recorded (the engine is alive)
        if ev["event"] == "stalled":
            seen.append(format_status(run_status(run)))
    engine.ledger.observers.append(look)
    assert engine.run() == "2 experiment(s) done"
    (stall,) = [e for e in _events(run) if e["event"] == "stalled" and e["phase"] == "proposing"]
    assert stall["phase"] == "proposing" and stall["index"] == 1 and stall["seconds"] >= 1.0
    said = next(line for line in lines if line.startswith("no progress for") and "proposing" in line)
    assert "the engine is proposing exp 1" in said and f"autoresearch stop {run.path.name} --now" in said
    assert seen and any("STALLED: no progress for " in s and "s: the engine is proposing exp 1" in s for s in seen)
    assert RunView(run).poll().state.stalled_since is None  # the decision that followed ended it
