"""The research loop: propose, check, commit, train, measure, decide, record, revert; until stopped.

One ``Engine`` runs one run directory. It is UI-free: it reports through a ``log`` callable (headless mode
prints timestamped lines; the TUI reads the same facts from the ledger). Everything it decides is appended
to the ledger before it acts on it, so a kill -9 at any moment loses nothing recorded, and a restart
resumes: an experiment without an outcome is recorded as interrupted and its commit reset away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import git

from .. import __version__
from ..agent.base import Agent, AgentContext, AgentError, AgentUnavailable, ContextTooSmall, Proposal, as_agent
from ..backends import agent_env
from ..harness.session import HarnessConfig
from ..training.trial import (TrialSpec, confinement_line, discard_weights, exposed_data, run_trial,
                              score_held_out)
from ..harness.integrity import check_script, format_report
from ..training.runner import Runner, RunResult, kill_orphan, log_tail
from . import control, review
from .events import (AgentErrorEvent, ControlTaken, Decision, ExperimentInterrupted, ExperimentRepaired, ExperimentStarted,
                     NoiseEstimated, Paused, Phase, ProposalRejected, Remeasured, Resumed, RunStarted, Stalled, Stopped, TrainingFinished,
                     TrainingStarted)
from .ledger import Ledger
from .awake import Inhibitor, hold_awake
from .contention import Contention, ContentionMonitor, slower_than_before, wait_for_quiet
from .diskspace import free_bytes, gb, is_disk_full, training_disk_fault, tree_bytes
from .earlystop import Judge, mode_for, references_from, schedule_signature
from .prefetch import Prepared
from .notify import NotifySettings, NotifyWatcher, attach
from .stall import StallWatch, default_stall_seconds, doing_words, stall_words
from .policy import NoiseEstimate, estimate_noise, make_policy, held_out_doubt
from .live import EngineLog, LiveState, parse_progress
from .rundir import PENDING, RunDir, RunError, RunLock, script_hash
from .signals import AgentInterrupted


@dataclass
class EngineOptions:
    max_experiments: int | None = None  # experiments to finish in this session (the baseline counts); None = until stopped
    max_seconds: float | None = None  # this session's wall-clock limit: no experiment starts that would end after it
    policy: str = "noise"
    baseline_seeds: int | None = None  # None: the policy's default
    disk_floor_gb: float = 1.0
    max_repairs: int = 2  # integrity-feedback rounds per proposal
    max_crash_repairs: int = 2  # times the agent may fix its own change after a crash, per experiment
    repair_outcomes: tuple[str, ...] = ("crash", "oom")  # failures worth showing the agent (not nan/timeout/invalid)
    agent_backoff: tuple[float, ...] = (5, 15, 30, 60, 120, 300)
    max_agent_failures: int = 10  # unusable proposals in a row before the run stops (a broken model or prompt)
    poll_interval: float = 0.5
    contention_threshold: float = 0.25  # other processes' share of the machine's CPU that makes a training contended
    max_contended_reruns: int = 2  # then a contended result is used (and said so)
    disk_poll_seconds: float = 30.0  # how often a paused run looks at the free space again
    max_disk_reruns: int = 3  # trainings in a row that a full disk spoiled: then the run stops (diskspace.py)
    quiet_wait_seconds: float = 600.0  # how long to wait for a quiet machine (once a night) before going on anyway
    stall_seconds: float | None = None  # no progress for this long is a stall; None: [notify] stall_minutes, else from the budget
    stall_check_seconds: float = 30.0  # how often the stall watchdog looks (stall.py)
    quiet_window_seconds: float = 5.0  # quiet means two such windows in a row below half the threshold
    notify: NotifySettings | None = None  # [notify]: a webhook / desktop notification on new bests, crashes, stops
    early_stop: str | None = None  # off | safe | aggressive; None: the run's config (default safe), see earlystop.py
    propose_ahead: str = "auto"  # the next proposal while training: auto (an agent on another machine), on, off


class Engine:
    def __init__(self, run: RunDir, agent: Agent | None, options: EngineOptions | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.run_dir = run
        self.agent = as_agent(agent) if agent is not None else None
        self.options = options or EngineOptions()
        self._echo = log
        self._engine_log = EngineLog(run.state)
        self.live = LiveState(run.state)
        self.config = run.config()
        self.ledger = Ledger(run.path)
        policy_opts = dict(self.config.get("policy_options") or {})
        self.policy = make_policy(self.options.policy or self.config.get("policy", "noise"), **policy_opts)
        self.backend = self.config["backend"]
        self.runner = Runner()
        self._stop: str | None = None  # reason, once a stop is requested
        self._stop_now = False
        self._paused = False
        self._skip = False
        self._lock = RunLock(run)
        self._training = False
        self._training_index: int | None = None
        self._prepared: Prepared | None = None  # the next proposal, asked for while the last experiment trained
        self._last_one = False  # this session's last experiment (max_experiments): nothing is asked ahead of it
        self._train_started = 0.0
        self._session_started = time.monotonic()  # (set again by run(): the limit counts from the loop's start)
        self._control_lock = threading.Lock()
        self._notes_seen: set[str] = set()  # note ids already acknowledged in the log
        self._notify: NotifyWatcher | None = None
        self._stall = StallWatch(None)  # the stall watchdog (run() sets its limit and starts it)
        self._busy_machine = False  # a wait for a quiet machine ran out: contended results are used from now on
        self._awake: Inhibitor | None = None  # sleep held off while this engine runs (where the machine allows)
        self._agent_busy = False  # the agent is writing a proposal or a repair (a stop abandons it)
        self._interrupt_signal: int | None = None  # the signal that wakes the main thread (install_signal_handlers)
        self._agent_failures = 0  # unusable proposals in a row
        self._train_seconds = 0.0  # training wall time of the current experiment (for the overhead figure)
        self._waited_seconds = 0.0  # ... and its waits for a quiet machine or disk space (not the engine's overhead)
        self._scored: list[RunResult] = []  # the current experiment's ok trainings (weights kept for the test split)
        self._reply_chars, self._reply_logged, self._reply_started = 0, 0.0, 0.0  # the agent's reply (heartbeat)

    # -- public ---------------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        """Say something: into the run's engine.log (for clients that attach later) and to the caller's log."""
        self._engine_log(line)
        try:
            self._echo(line)
        except OSError:  # stdout is a file on a full disk (a detached engine): the line is lost, the run is not
            pass

    def request_stop(self, now: bool = False, reason: str = "stop requested") -> None:
        if now:
            self._stop_now = True
            self._stop = reason  # (replaces an earlier "after the experiment": it is not that any more)
            self.runner.stop()
        elif self._stop is None:
            self._stop = reason

    def run(self) -> str:
        """Loop until stopped or max_experiments are done. Returns why it stopped."""
        self._lock.acquire()
        self._session_started = time.monotonic()
        try:
            budget = self.config.get("profile", {}).get("time_budget")
            self._notify = attach(self.ledger, self.options.notify, self.run_dir.path.name, self.log)
            minutes = self.options.notify.stall_minutes if self.options.notify is not None else None
            self._stall = StallWatch(self.options.stall_seconds or (minutes * 60.0 if minutes else default_stall_seconds(budget)))
            self.ledger.observers.append(self._stall.observe)
            resumed = bool(self.ledger.events())
            self.ledger.append(RunStarted(pid=os.getpid(), host=socket.gethostname(), version=__version__,
                                          resumed=resumed))
            self._stall.start(self._stalled, interval=self.options.stall_check_seconds)
            self._phase("starting")
            self._say_confinement()
            self._awake = hold_awake(why=f"autoresearch run {self.run_dir.path.name}")  # ends with this process
            self.log(self._awake.line)
            self._recover()
            reason = self._loop()
        except BaseException as e:
            self._record_stop(f"error: {type(e).__name__}: {e}")
            raise
        else:
            self._record_stop(reason)
            self.log(f"stopped: {reason}")
            return reason
        finally:
            self.live.set("training", None)
            self.live.set("agent", None, force=True)
            self._stall.stop()
            with contextlib.suppress(ValueError):
                self.ledger.observers.remove(self._stall.observe)
            self._lock.release()
            if self._awake is not None:
                self._awake.release()
            if self._notify is not None:
                self._notify.close()  # (the "stopped" notice goes out, and its failure still reaches engine.log)
            self._engine_log.close()

    def _stalled(self, stall: Stalled) -> None:
        """The watchdog's thread: no progress for longer than the run's trainings allow (engine.stall)."""
        self.ledger.append(stall)
        self.log(stall_words(stall.seconds, doing_words(stall.phase, stall.index, stall.detail), self.run_dir.path.name,
                             os.getpid()))

    def _record_stop(self, reason: str) -> None:
        try:
            self.ledger.append(Stopped(reason=reason))
        except OSError as e:
            if not is_disk_full(e):
                raise
            self.log(f"the stop could not be recorded: the disk is full ({e}); the next start recovers the run")

    def _past_time_limit(self, done: int) -> str:
        """Why no experiment may start under ``max_seconds`` ('' when one may): the next would end after the limit,
        judged by this session's mean time per experiment so far."""
        limit = self.options.max_seconds
        if limit is None or done == 0:
            return ""
        elapsed = time.monotonic() - self._session_started
        if elapsed + elapsed / done <= limit:
            return ""
        return (f"the time limit ({_minutes(limit)}) leaves no room for another experiment "
                f"(about {_minutes(elapsed / done)} each; {done} done in {_minutes(elapsed)})")

    def _say_confinement(self) -> None:
        """The run's first lines say how the agent's code is confined here (and what is not hidden from it)."""
        self.log(f"sandbox: {confinement_line()}")
        data = self.config.get("data_dir")
        root = exposed_data(data) if data else None
        if root:
            self.log(f"warning: the data ({data}) is inside {root}, which the training may read: the validation split "
                     "is not hidden from it. Keep prepared data outside the Python installation and this checkout "
                     "(AUTORESEARCH_CACHE).")

    def _phase(self, phase: str, index: int | None = None, detail: str = "") -> None:
        """Record what the engine is doing now (clients show it; the ledger keeps the night's timeline)."""
        self.ledger.append(Phase(phase=phase, index=index, detail=detail))

    # -- the loop -------------------------------------------------------------------------------------
    def _loop(self) -> str:
        already = {e.index for e in self.ledger.experiments()}
        announced_pause = False
        while True:
            self._poll_control()
            if self._stop:
                return self._stop
            if self._paused:
                if not announced_pause:
                    self._phase("paused")
                    announced_pause = True
                time.sleep(self.options.poll_interval)
                continue
            announced_pause = False
            if not self._disk_ok():
                continue
            exps = self.ledger.experiments()
            done = [e for e in exps if e.status not in (None, "interrupted") and e.index not in already
                    and e.kind != "revert"]
            if self.options.max_experiments is not None and len(done) >= self.options.max_experiments:
                return f"{len(done)} experiment(s) done"
            self._last_one = self.options.max_experiments is not None and len(done) + 1 >= self.options.max_experiments
            late = self._past_time_limit(len(done))
            if late:
                return late
            has_baseline = any(e.kind == "baseline" and e.status == "keep" for e in exps)
            if has_baseline and self.agent is None:
                return "no agent configured: pass --agent to research beyond the baseline"
            index = self.ledger.next_index()
            try:
                if not has_baseline:
                    if not self._baseline():
                        return "the baseline failed: fix the template or the data and start again"
                else:
                    self._carry_out_requests()
                    if self._stop or self._paused or self.ledger.requests():
                        continue
                    index = self.ledger.next_index()
                    self._experiment()
            except (OSError, git.GitCommandError) as e:
                if not self._disk_error(e):
                    raise
                if not self._recover_from_full_disk(e):
                    return self._stop or "stopped while the disk was full"
            finally:
                self._forget_trainings(index)

    @property
    def _floor_bytes(self) -> int:
        """The disk floor (options.disk_floor_gb) in bytes: below it the run pauses, and a failure is the disk's."""
        return int(self.options.disk_floor_gb * 2**30)

    def _disk_error(self, error: BaseException) -> bool:
        """A full disk's error: said so (ENOSPC, a traceback's words), or a git error ("couldn't write ...lock")
        while the run's disk is below its floor."""
        if is_disk_full(error):
            return True
        free = free_bytes(self.run_dir.path)
        return 0 <= free < self._floor_bytes

    def _recover_from_full_disk(self, error: BaseException) -> bool:
        """The disk filled up while the engine wrote (the ledger, git, a trial's files) outside a training: wait for
        space, then bring the run back to a consistent state as a resume would (an experiment left open is
        recorded as interrupted and its commit reset away). False when a stop came first."""
        if self._stop:
            return False
        first = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        self.log(f"the disk is full ({first}): waiting for space on {self.run_dir.path}; nothing is lost, the run "
                 "continues by itself")
        if not self._wait_for_space():
            return False
        (self.run_dir.state / PENDING).write_text("disk")  # whatever git was doing is reset to the best (_recover)
        self._recover()
        return True

    def _recover(self) -> None:
        """Bring the run back to a consistent state after any stop, including kill -9 and power loss."""
        state = self.run_dir.state
        if kill_orphan(state / "training.pid"):
            self.log("resume: killed the training left running by the previous engine")
        self._check_data()
        self.run_dir.remove_stale_git_locks()  # safe: we hold the run lock, no other engine touches git here
        open_exp = self.ledger.open_experiment()
        pending = (state / PENDING).exists()
        if open_exp is not None:
            self.ledger.append(ExperimentInterrupted(index=open_exp.index,
                                                     reason="the engine stopped before the outcome was recorded"))
            self.log(f"resume: experiment {open_exp.index} had no outcome: recorded as interrupted, reverted")
        target = self._target_commit()
        foreign = self.run_dir.foreign_changes()
        head = self.run_dir.head()
        if foreign and open_exp is None and not pending:
            raise RunError(
                f"{self.run_dir.path} has changes the engine did not make ({', '.join(foreign)}). Discard them "
                f"(`git -C {self.run_dir.path} checkout -- .`) and run again, or start a new run for your own version."
            )
        if (head != target and not pending and open_exp is None and not self.run_dir.is_experiment_commit(head)
                and self.run_dir.is_ancestor(target, head)):  # (pending/open: the engine's own commit, maybe unmarked)
            raise RunError(
                f"{self.run_dir.path} has a commit the engine did not make ({head[:7]}, on top of the best {target[:7]}). "
                f"The run would throw it away: keep it elsewhere, then `git -C {self.run_dir.path} reset --hard "
                f"{target[:7]}` and run again, or start a new run for your version."
            )
        if foreign or pending or open_exp is not None or head != target:
            if head != target and open_exp is None and not pending:
                self.log(f"resume: HEAD {head[:7]} is an unrecorded experiment commit: reset to {target[:7]}")
            self.run_dir.reset_to(target)
        (state / PENDING).unlink(missing_ok=True)

    def _target_commit(self) -> str:
        """The commit the tree must be at: the best so far, else the latest baseline's, else the root."""
        best = self.ledger.best()
        if best is not None and best.commit:
            return best.commit
        baselines = [e for e in self.ledger.experiments() if e.kind == "baseline" and e.commit]
        return baselines[-1].commit if baselines else self._root_commit()  # type: ignore[return-value]

    def _check_data(self) -> None:
        """The run's data must still be there and be the data the run was created with."""
        from ..harness.manifest import DataError, verify

        data_dir = self.config.get("data_dir")
        if not data_dir:
            return
        try:  # every file hashed once per engine start: a shard changed in place with its size and mtime kept
            manifest = verify(Path(data_dir), use_cache=False)  # passes the per-training stamp check, not this
        except DataError as e:
            raise RunError(f"the run's data is not usable: {e}") from None
        frozen = self.config.get("manifest_digest")
        if frozen and manifest.digest != frozen:
            raise RunError(
                f"the data at {data_dir} is not the data this run was created with (manifest {manifest.digest[:12]}, "
                f"run {frozen[:12]}): results would not be comparable. Start a new run with another --tag."
            )

    def _root_commit(self) -> str:
        return self.run_dir.repo.git.rev_list("--max-parents=0", "HEAD").split()[0]

    # -- baseline ---------------------------------------------------------------------------------------
    def _baseline(self) -> bool:
        """The unmodified script with k seeds (the noise floor's first estimate). False when it fails."""
        index = self.ledger.next_index()
        source = self.run_dir.script.read_text()
        commit = self.run_dir.head()
        seeds = self.options.baseline_seeds or self.policy.baseline_seeds
        self.ledger.append(ExperimentStarted(index=index, kind="baseline", parent=None, commit=commit,
                                             description="baseline", script_sha256=script_hash(source),
                                             manifest_digest=self.config.get("manifest_digest")))
        self.run_dir.mark_experiment(index, commit)
        self.log(f"[exp {index}] baseline, {seeds} seed(s)")
        results = []
        for i in range(seeds):
            r = self._train(index, i, purpose="baseline")
            if r is None:
                return True  # interrupted: recorded; the loop decides what next
            results.append(r)
            if r.status != "ok":
                self._decide_failed(index, r)
                self.log(f"[exp {index}] the baseline itself failed ({r.status}): {r.reason}\n{r.tail}")
                return False
        bpbs = [r.val_bpb for r in results]
        mean = sum(bpbs) / len(bpbs)
        self._update_noise()
        self.ledger.append(Decision(index=index, status="keep", val_bpb=mean, delta=None, reason="baseline",
                                    test_bpb=self._test_bpb(index)))
        self.ledger.write_results_tsv()
        seeds_text = f" (seeds: {', '.join(f'{b:.6f}' for b in bpbs)})" if len(bpbs) > 1 else ""
        self.log(f"[exp {index}] baseline val_bpb {mean:.6f}{seeds_text}")
        return True

    # -- one agent experiment -----------------------------------------------------------------------------
    def _experiment(self) -> None:
        t_start = time.perf_counter()
        self._train_seconds = self._waited_seconds = 0.0
        index = self.ledger.next_index()
        best = self.ledger.best()
        assert best is not None
        ctx = self._context()
        t_agent = time.perf_counter()
        self._phase("proposing", index)
        proposal, ahead = self._next_proposal(ctx, best.commit)
        agent_seconds = time.perf_counter() - t_agent
        if proposal is None:
            self._agent_failures += 1
            if self._agent_failures >= self.options.max_agent_failures:
                self.request_stop(reason=f"the agent gave {self._agent_failures} unusable proposals in a row: "
                                         "check the model and the prompts (see agent_error events)")
            else:
                self._sleep(min(2.0 ** (self._agent_failures - 1), 60.0))
            return
        self._agent_failures = 0
        self._release_agent()
        self._poll_control()
        if self._stop:
            return  # a stop arrived while the agent was thinking: nothing was committed or trained
        self._keep_prompts(proposal)
        self._commit(proposal, ExperimentStarted(index=index, kind="agent", parent=best.commit,
                                                 manifest_digest=self.config.get("manifest_digest")))
        self.log(f"[exp {index}] {proposal.description}")
        self._propose_ahead(ctx, index, proposal, best.commit)
        best_bpbs = best.ok_values or [best.val_bpb]
        bpbs: list[float] = []
        trainings = 0  # every training of this experiment gets its own log, crashed versions included
        repairs = 0
        purpose = "experiment"
        while True:
            r = self._train(index, len(bpbs), trainings, purpose=purpose)
            trainings += 1
            if r is None:
                self.run_dir.reset_to(best.commit)
                return
            if r.status != "ok":
                if not bpbs and r.status in self.options.repair_outcomes and repairs < self.options.max_crash_repairs:
                    fixed = self._crash_repair(index, proposal, r)
                    self._poll_control()
                    if fixed is not None and not self._stop_now and not self._skip:
                        repairs += 1
                        proposal = fixed
                        self._commit_repair(index, best.commit, fixed, repairs, r.status)
                        purpose = "repair"
                        continue
                    self._skip = False  # a skip during the repair ends the experiment as it stands: the failure
                self._decide_failed(index, r, self._timing(t_start, agent_seconds, ahead))
                self.run_dir.reset_to(best.commit)
                if r.status == "early_stop":
                    self.log(f"[exp {index}] DISCARD {r.reason}")
                return
            bpbs.append(r.val_bpb)
            if len(bpbs) > 1:
                self._update_noise()
            decision = self.policy.decide(bpbs, best_bpbs, self._noise(), best_selected=best.kind != "baseline")
            if decision.action == "rerun":
                self.log(f"[exp {index}] promising, confirming with another seed: {decision.reason}")
                purpose = "confirm"
                continue
            break
        mean = sum(bpbs) / len(bpbs)
        delta = mean - (sum(best_bpbs) / len(best_bpbs))
        status = "keep" if decision.action == "keep" else "discard"
        reason = decision.reason
        test = self._test_bpb(index) if status == "keep" else None  # scored for a keep only: a discard's is never shown
        if status == "keep":
            doubt = held_out_doubt(-delta, (best.test_bpb - test) if best.test_bpb is not None and test is not None else None,
                              self._noise().sigma)
            if doubt:
                status, reason = "discard", f"suspicious, not kept: {doubt}"
                self.log(f"[exp {index}] {reason}")
        self.ledger.append(Decision(
            index=index, status=status, val_bpb=mean, delta=delta, reason=reason,
            test_bpb=test if status == "keep" or reason.startswith("suspicious") else None,
            timing=self._timing(t_start, agent_seconds, ahead)))  # recorded before acted on: a kill after this resumes to the right commit
        if status != "keep":
            self.run_dir.reset_to(best.commit)
        self.ledger.write_results_tsv()
        self.log(f"[exp {index}] {status.upper()} val_bpb {mean:.6f} ({delta:+.6f}): {reason}")

    def _timing(self, t_start: float, agent_seconds: float, ahead: float) -> dict[str, float]:
        """Where the experiment's time went (the decision's timing): the agent, the trainings, the engine's rest,
        and the agent's work during the last training (ahead) when there was some."""
        total = time.perf_counter() - t_start
        rest = total - agent_seconds - self._train_seconds - self._waited_seconds
        timing = {"agent_seconds": round(agent_seconds, 3), "train_seconds": round(self._train_seconds, 3),
                  "engine_seconds": round(rest, 3)}
        if self._waited_seconds:
            timing["waited_seconds"] = round(self._waited_seconds, 3)
        if ahead:
            timing["agent_ahead_seconds"] = round(ahead, 3)
        return timing

    def _next_proposal(self, ctx: AgentContext, best_commit: str) -> tuple[Proposal | None, float]:
        """(the proposal, seconds the agent worked on it while the last experiment trained): the one prepared
        during the last training when it is usable (rebased onto a new best), else one asked for now."""
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            return self._proposal(ctx), 0.0
        if not prepared.ready:
            self.log("waiting for the proposal the agent has been writing since the last training started")
        if not prepared.wait(lambda: (self._poll_control(), not self._stop)[1], self.options.poll_interval):
            return None, 0.0
        proposal, why = prepared.for_best(best_commit, ctx.script)
        ahead = prepared.seconds()
        if proposal is None:
            self.log(f"the proposal prepared during the last training is not used: {why}; asking again")
            return self._proposal(ctx), ahead
        if proposal.meta.get("rebased_from"):
            self.log("the proposal prepared during the last training was rebased onto the new best")
        return self._validated(ctx, proposal), ahead

    def _propose_ahead(self, ctx: AgentContext, index: int, proposal: Proposal, best_commit: str) -> None:
        """Ask for the next proposal in a thread while this experiment trains (see prefetch.py), when it costs
        the training nothing (or --propose-ahead on)."""
        mode = self.options.propose_ahead
        if self.agent is None or mode == "off" or self._last_one or self._stop:
            return
        hw = self.config.get("hardware") or {}
        if mode == "auto" and not self.agent.works_alongside_training(bool(hw.get("cuda") or hw.get("apple_chip"))):
            return
        running = {"index": index, "status": "running", "val_bpb": None, "delta": None, "description": proposal.description}
        ahead = dataclasses.replace(ctx, history=[*ctx.history, running], last_outcome=ctx.last_outcome)
        self._prepared = Prepared(self.agent, ahead, best_commit)

    def _proposal(self, ctx: AgentContext) -> Proposal | None:
        """A proposal that passes the integrity check and is new, or None (recorded as an agent error)."""
        assert self.agent is not None
        self._start_reply_clock()
        attempt = 0
        while True:
            try:
                with self._agent_turn():
                    proposal = self.agent.propose(ctx)
                break
            except AgentInterrupted:
                self.log(f"the proposal is abandoned: {self._stop or 'stop requested'}")
                return None
            except AgentUnavailable as e:
                wait = self.options.agent_backoff[min(attempt, len(self.options.agent_backoff) - 1)]
                attempt += 1
                self.ledger.append(AgentErrorEvent(message=str(e), unavailable=True, retry_in=wait))
                self._phase("waiting_for_agent", detail=str(e)[:300])
                self.log(f"agent unavailable ({e}); waiting {wait:.0f}s (no experiment is spent)")
                if not self._sleep(wait):
                    return None
            except ContextTooSmall as e:  # no prompt can ever fit: stopping says so at once (not after 10 tries)
                self.ledger.append(AgentErrorEvent(message=str(e)))
                self.log(f"agent error: {e}")
                self.request_stop(reason=f"the LLM cannot take a prompt: {e}")
                return None
            except AgentError as e:
                self.ledger.append(AgentErrorEvent(message=str(e)))
                self.log(f"agent error: {e}")
                return None
            else:
                if attempt:
                    self._phase("proposing", detail="the agent is reachable again")
        return self._validated(ctx, proposal)

    def _validated(self, ctx: AgentContext, proposal: Proposal, crash: str = "") -> Proposal | None:
        """``proposal``, or the agent's fix of it, once it passes the checks and is new; None if it never does.

        With ``crash`` (how its training failed) the agent is asked for a fix first, then the fix is checked.
        """
        assert self.agent is not None
        seen = {sha: e.index for e in self.ledger.experiments() for sha in [*e.earlier_sha256, e.script_sha256] if sha}
        problems = crash or self._problems(proposal, seen)
        rounds = 0
        while problems:
            if rounds >= self.options.max_repairs + (1 if crash else 0):
                break
            rounds += 1
            if not (crash and rounds == 1):
                self.ledger.append(ProposalRejected(description=proposal.description, reason=problems[-3000:],
                                                    round=rounds))
                self.log(f"proposal rejected, asking for a fix: {problems.splitlines()[0]}")
            try:
                with self._agent_turn():
                    fixed = self.agent.repair(ctx, proposal, problems)
            except AgentInterrupted:
                self.log(f"the repair is abandoned: {self._stop or 'stop requested'}")
                return None
            except AgentError as e:
                fixed = None
                problems += f"\n(repair failed: {e})"
            else:
                if fixed is None and crash and rounds == 1:
                    self.log("the agent did not repair its change")
                    return None  # declined: the crash is the experiment's outcome, not an agent error
            if fixed is None:
                break
            proposal = fixed
            problems = self._problems(proposal, seen)
        else:
            return proposal
        what = "no usable repair after the training failed" if crash and rounds <= 1 else "proposal rejected"
        self.ledger.append(AgentErrorEvent(message=f"{what}: {problems[-3000:]}", description=proposal.description))
        self.log(f"{what}: {problems.splitlines()[0]}")
        return None

    def _crash_repair(self, index: int, proposal: Proposal, r: RunResult) -> Proposal | None:
        """Show the agent how its change failed (upstream's "fix it if it is dumb"); its checked fix, or None."""
        self._poll_control()
        if self._stop:
            return None
        feedback = (f"Training ended with {r.status}: {r.reason}\n"
                    f"The end of its log (the traceback is usually here):\n```\n{(r.tail or '')[-2500:]}\n```\n"
                    "If the mistake is simple (a typo, a missing import, a shape, a batch too big for memory), fix it "
                    "and keep the idea. If the idea itself cannot work, propose something else.")
        self.log(f"[exp {index}] {r.status}: asking the agent to repair its change")
        self._phase("repairing", index, detail=r.status)
        self._start_reply_clock()
        return self._validated(self._context(), proposal, feedback)

    def _keep_prompts(self, proposal: Proposal) -> None:
        """A copy of the prompts a proposal was written with, once per digest: a run records what steered it."""
        digest = proposal.meta.get("prompts")
        target = self.run_dir.state / "prompts" / str(digest)
        if not digest or self.agent is None or target.exists():
            return
        files = self.agent.prompt_files()
        if not files:
            return
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, text in files.items():
            (tmp / name).write_text(text)
        os.replace(tmp, target)

    def _release_agent(self) -> None:
        """The LLM must not hold memory the training needs (Apple unified memory, one GPU; configurable)."""
        hw = self.config.get("hardware") or {}
        if self.agent is not None:
            held = self.agent.release(shared_memory=bool(hw.get("cuda") or hw.get("apple_chip")))
            if held:
                self.log(f"warning: the LLM was not unloaded before the training: {held}. The training may run short "
                         "of memory; a model that is still generating counts as another process (contention)")

    def _start_reply_clock(self) -> None:
        """Before asking the agent: its streamed reply feeds the heartbeat, timed from now."""
        if self.agent is not None:
            self.agent.set_reply_listener(self._agent_progress)
        self._reply_chars, self._reply_started = 0, time.monotonic()
        self._reply_logged = self._reply_started
        self.live.set("agent", {"state": "reading", "chars": 0, "seconds": 0.0, "since": time.time()}, force=True)

    def _agent_progress(self, piece: str) -> None:
        """A heartbeat while a slow model works: one log line every 30 s, not a line per token; live.json each second."""
        now = time.monotonic()
        if self._reply_chars == 0 and now - self._reply_started >= 10:
            self.log(f"agent: replying (it read the prompt for {now - self._reply_started:.0f}s)")
            self._reply_logged = now
        self._reply_chars += len(piece)
        seconds = now - self._reply_started
        self.live.set("agent", {"state": "writing", "chars": self._reply_chars, "seconds": round(seconds, 1),
                                "since": time.time() - seconds})
        if now - self._reply_logged >= 30:
            self._reply_logged = now
            self.log(f"agent: {self._reply_chars:,} characters written ({seconds:.0f}s)")

    def _commit(self, proposal: Proposal, event: ExperimentStarted | ExperimentRepaired) -> None:
        """Commit the proposal as experiment ``event.index`` and record ``event`` with its commit, between PENDING
        marks (a kill in between is recovered: see _recover)."""
        self.live.set("agent", None, force=True)
        (self.run_dir.state / PENDING).write_text(str(event.index))
        event.commit = self.run_dir.commit_script(proposal.source, proposal.description, event.index)
        event.description = proposal.description
        event.script_sha256 = script_hash(proposal.source)
        event.agent = proposal.meta
        self.ledger.append(event)
        (self.run_dir.state / PENDING).unlink(missing_ok=True)

    def _commit_repair(self, index: int, parent: str, fixed: Proposal, attempt: int, after: str) -> None:
        """Replace the experiment's commit with the repaired script (recorded before the next training)."""
        self._release_agent()
        self.run_dir.reset_to(parent)
        self._commit(fixed, ExperimentRepaired(index=index, attempt=attempt, after=after))
        self.log(f"[exp {index}] repaired (attempt {attempt}): {fixed.description}")

    def _problems(self, proposal: Proposal, seen: dict[str, int]) -> str:
        if not proposal.description.strip():
            return "the proposal has no description"
        report = check_script(proposal.source, backend=self.backend)
        if not report.ok:
            return format_report(report)
        earlier = seen.get(script_hash(proposal.source))
        if earlier is not None:
            return f"this script is identical to experiment {earlier}'s: propose a different change"
        return ""

    # -- training ---------------------------------------------------------------------------------------
    def _train(self, index: int, seed_run: int, attempt: int | None = None, purpose: str = "experiment") -> RunResult | None:
        """Train the current train.py once; record it. None when it was interrupted (stop-now / skip).

        ``attempt`` numbers the trainings of one experiment (logs and metrics files); default: ``seed_run``.
        ``purpose``: baseline, experiment, confirm (another seed of a promising change), repair (the agent's fix).
        A training during which other processes took the machine (contention.py) is recorded as contended, not
        used, and trained again once the machine is quiet (at most ``max_contended_reruns`` times); one that a full
        disk spoiled (diskspace.py), as disk_full, and trained again once there is space.
        """
        attempt = seed_run if attempt is None else attempt
        contended = full = 0
        while True:
            last = contended == self.options.max_contended_reruns or self._busy_machine
            result, busy = self._train_once(index, seed_run, attempt, purpose, contended + full, last)
            if result is not None and result.status == "disk_full":
                full += 1
                if full <= self.options.max_disk_reruns:
                    continue
                self.request_stop(reason=f"the disk filled up during {full} trainings in a row: free space on "
                                         f"{self.run_dir.path} (or move the runs elsewhere) and run again")
                self.ledger.append(ExperimentInterrupted(index=index, reason=self._stop or ""))
                self.log(f"[exp {index}] interrupted: {self._stop}")
                return None
            if result is None or busy is None:
                return result
            if last:
                why = "the machine stays busy tonight" if self._busy_machine else f"still so after {contended} re-run(s)"
                self.log(f"[exp {index}] contended ({busy.words()}), {why}: this result is used; its others_cpu "
                         "figure is in the ledger")
                return result
            contended += 1
            discard_weights(result)
            self._scored = [r for r in self._scored if r is not result]
            self.log(f"[exp {index}] seed {result.metrics.get('seed', seed_run)}: contended, not used: {busy.words()} "
                     f"during the training; training it again once the machine is quiet")
            if not self._wait_for_quiet(index):
                return None

    def _wait_for_quiet(self, index: int) -> bool:
        """Wait (bounded) for the other processes to leave the machine; False when a stop came meanwhile."""
        self._phase("waiting_for_quiet", index, detail="other processes are using the machine")
        limit = self.options.quiet_wait_seconds
        t0 = time.perf_counter()
        seen = wait_for_quiet(self.options.contention_threshold / 2, limit=limit, window=self.options.quiet_window_seconds,
                              keep_waiting=lambda: (self._poll_control(), not self._stop)[1])
        self._waited_seconds += time.perf_counter() - t0
        if self._stop:
            return False
        if seen is None:  # not again tonight: a machine that is never quiet must not cost the night in waiting
            self._busy_machine = True
            self.log(f"[exp {index}] the machine stayed busy for {limit / 60:.0f} min: training again anyway, and from "
                     "now on contended results are used (marked in the ledger) instead of waited out")
        else:
            self.log(f"[exp {index}] the machine is quiet again ({seen.words()})")
        return True

    def _train_once(self, index: int, seed_run: int, attempt: int, purpose: str, rerun: int,
                    last: bool) -> tuple[RunResult | None, Contention | None]:
        """One training; (its result, the contention when it was contended and ok, else None)."""
        run = self.run_dir
        log_path = run.log_path(index, attempt)
        if rerun:
            log_path = log_path.with_name(f"{log_path.stem}-rerun{rerun}.log")
        seed = int(self.config.get("seed", 0)) + seed_run
        harness = dataclasses.replace(HarnessConfig.load(run.harness_path), seed=seed)
        deadline = float(self.config["deadline_seconds"])
        spec = TrialSpec(script_dir=run.path, work_dir=run.state / "trials" / f"{index:04d}-{attempt}-{rerun}",
                         harness=harness, log_path=log_path, deadline_seconds=deadline,
                         eval_deadline_seconds=max(300.0, deadline), env=agent_env(backend=self.backend),
                         keep_weights=True, judge=self._judge(index, purpose) if seed_run == 0 else None)
        monitor = ContentionMonitor()
        spec.deadline_stretch = monitor.stretch  # (1 until it starts, below)
        log_rel = str(log_path.relative_to(run.state))
        self.ledger.append(TrainingStarted(index=index, attempt=attempt, seed=seed, log=log_rel, purpose=purpose,
                                           budget_seconds=float(self.config.get("profile", {}).get("time_budget", 0))))
        self.live.set("training", {"index": index, "attempt": attempt, "seed": seed, "log": log_rel,
                                   "started": time.time()}, force=True)
        watcher = threading.Thread(target=self._watch_control, daemon=True)
        self._training = True
        watcher.start()
        t0 = time.perf_counter()
        self._train_started = time.time()
        free_before = free_bytes(run.path)
        monitor.start()
        try:
            result = run_trial(spec, self.runner, on_line=self._on_train_line, pid_file=run.state / "training.pid",
                               on_phase=lambda phase: self._phase("evaluating", index))
        except OSError as e:  # the engine's side of the trial could not write its files
            if not self._disk_error(e):
                raise
            result = RunResult(status="crash", reason=f"the trial's files could not be written: {e}", log_path=log_path)
        finally:
            self._train_seconds += time.perf_counter() - t0
            self._training = False
            self.live.set("training", None, force=True)
            watcher.join(timeout=5)
        busy = monitor.stop()
        if result.status == "ok":
            busy = dataclasses.replace(busy, slow=slower_than_before(result.metrics.get("tokens_per_second"),
                                                                     self._earlier_speeds(index)))
        others = round(busy.share, 3)
        gpu = round(busy.gpu_share, 3) if monitor.gpu.available else None
        self.runner = Runner()  # a Runner stopped by skip/stop-now stays stopped; the next run gets a fresh one
        self._blame_the_disk(index, spec, result, free_before)
        if result.status == "interrupted" or self._skip:
            why = "skipped by the user" if self._skip else (self._stop or "interrupted")
            self._skip = False
            self.ledger.append(TrainingFinished(index=index, seed=seed, outcome="interrupted", val_bpb=None,
                                                metrics=result.metrics, peak_memory_mb=result.peak_memory_mb,
                                                wall_seconds=result.wall_seconds, log=log_rel, reason=why,
                                                others_cpu=others, others_gpu=gpu))
            if purpose != "retest":  # a re-test's experiment was decided already: it keeps its outcome
                self.ledger.append(ExperimentInterrupted(index=index, reason=why))
            self.ledger.write_results_tsv()
            self.log(f"[exp {index}] interrupted: {why}")
            return None, None
        # an ok training, or one that ran out of time, while others took the machine: the machine's fault, not the change's
        # (a training stopped early on a busy machine too: the slower steps may be what looked hopeless)
        unfair = result.status in ("ok", "timeout", "early_stop") and (busy.busier(self.options.contention_threshold)
                                                                       or bool(busy.slow))
        contended = unfair and not last
        self.ledger.append(TrainingFinished(index=index, seed=seed, outcome="contended" if contended else result.status,
                                            val_bpb=result.val_bpb if result.status == "ok" else None,
                                            metrics=result.metrics, peak_memory_mb=result.peak_memory_mb,
                                            wall_seconds=result.wall_seconds, log=log_rel,
                                            reason=busy.words() if contended else result.reason,
                                            tail=result.tail[-2000:] if result.status != "ok" else "",
                                            others_cpu=others, others_gpu=gpu))
        if result.status == "ok":
            self._scored.append(result)
            m = result.metrics
            self.log(f"[exp {index}] seed {seed}: val_bpb {result.val_bpb:.6f}, {m.get('num_steps')} steps, "
                     f"{m.get('tokens_per_second', 0):,.0f} tok/s, {result.wall_seconds:.0f}s")
        else:
            self.log(f"[exp {index}] seed {seed}: {result.status}: {result.reason}")
        return result, busy if unfair else None

    def _earlier_speeds(self, index: int) -> list[float]:
        """Tokens per second of the earlier usable trainings of the script experiment ``index`` trains now (its own
        other seeds, the same script in other experiments: a re-test, a re-measured best)."""
        exps = self.ledger.experiments()
        this = next((e for e in exps if e.index == index), None)
        if this is None or not this.script_sha256:
            return []
        return [float(t.metrics["tokens_per_second"]) for e in exps if e.script_sha256 == this.script_sha256
                for t in e.trainings if t.ok and isinstance(t.metrics.get("tokens_per_second"), (int, float))]

    def _blame_the_disk(self, index: int, spec: TrialSpec, result: RunResult, free_before: int) -> None:
        """A training that failed for a full disk: disk_full when the disk filled up around it (then the engine waits
        for space before it is recorded), its reason says so when the training itself filled it (a crash to repair)."""
        log_size = spec.log_path.stat().st_size if spec.log_path.exists() else 0
        fault = training_disk_fault(result.status, f"{result.reason}\n{result.tail}", free_before=free_before,
                                    free_now=free_bytes(self.run_dir.path), floor=self._floor_bytes,
                                    wrote=tree_bytes(spec.work_dir) + log_size)
        if fault is None:
            return
        if not fault.machine:
            result.reason = f"{fault.reason} ({result.reason})"
            return
        result.status, result.reason = "disk_full", fault.reason
        self.log(f"[exp {index}] {fault.reason}: the machine's fault, not the change's; not used, trained again once "
                 "there is space")
        if not self._wait_for_space(index):
            result.status, result.reason = "interrupted", self._stop or "stopped while the disk was full"

    def _judge(self, index: int, purpose: str) -> Callable[[list[tuple[float, float]]], str] | None:
        """The early-stop check of an agent's change on its first seed (not the baseline, a confirmation, a re-test):
        None when early stopping is off or cannot compare this change (said in the log)."""
        if purpose not in ("experiment", "repair"):
            return None
        mode = mode_for(self.options.early_stop or self.config.get("early_stop"))
        best = self.ledger.best()
        if mode is None or best is None:
            return None
        repo = self.run_dir.repo
        name = self.run_dir.script.name
        refs = references_from(self.ledger.experiments(), best, lambda commit: repo.git.show(f"{commit}:{name}"))
        judge = Judge(mode, refs, best_bpb=best.val_bpb, schedule=schedule_signature(self.run_dir.script.read_text()),
                      sigma=self._noise().sigma)
        if not judge.active:
            self.log(f"[exp {index}] not judged for early stopping: {judge.off_reason}")
            return None
        if judge.against != "the baseline's seeds":
            self.log(f"[exp {index}] judged for early stopping against {judge.against}")

        def check(curve: list[tuple[float, float]]) -> str:
            stop = judge.check(curve)
            return stop.reason if stop is not None else ""
        return check

    def _on_train_line(self, line: str) -> None:
        """A line of the training's output (reader thread): progress into live.json, the phase, the headless log."""
        self._stall.output()
        progress = parse_progress(line) if line.startswith("step ") else None
        if progress is not None:
            self.live.update("training", progress)
        if line.startswith(("step ", "harness:")):
            self.log(f"    {line}")

    def _decide_failed(self, index: int, r: RunResult, timing: dict[str, float] | None = None) -> None:
        # a training stopped early is a discard (never kept), without a score: it has none
        status = "discard" if r.status == "early_stop" else r.status
        self.ledger.append(Decision(index=index, status=status, val_bpb=None, delta=None, reason=r.reason, timing=timing))
        self.ledger.write_results_tsv()

    def _test_bpb(self, index: int) -> float | None:
        """The held-out test score of the experiment's first successful training (scored now, for a candidate the
        policy would keep; never shown to the agent)."""
        if not self._scored:
            return None
        self._phase("evaluating", index, detail="held-out test split")
        return score_held_out(self._scored[0], self.runner)

    def _forget_trainings(self, index: int) -> None:
        """The experiment is decided: its kept weights and trial files go."""
        for r in self._scored:
            discard_weights(r)
        self._scored = []
        for path in (self.run_dir.state / "trials").glob(f"{index:04d}-*"):
            shutil.rmtree(path, ignore_errors=True)

    # -- noise ------------------------------------------------------------------------------------------
    def _noise(self) -> NoiseEstimate:
        return estimate_noise([e.ok_values for e in self.ledger.experiments() if len(e.ok_values) >= 2])

    def _update_noise(self) -> None:
        noise = self._noise()
        if noise.sigma is not None:
            self.ledger.append(NoiseEstimated(sigma=noise.sigma, dof=noise.dof, source="repeats"))

    # -- context for the agent ----------------------------------------------------------------------------
    def _context(self) -> AgentContext:
        exps = self.ledger.experiments()
        best = self.ledger.best()
        last = exps[-1] if exps else None
        last_outcome = None
        if last is not None:
            log = next((r.log for r in reversed(last.trainings) if r.log), None)
            tail = log_tail(self.run_dir.state / log) if log else ""
            last_outcome = {"index": last.index, "status": last.status, "reason": last.reason, "log_tail": tail}
        history = [{"index": e.index, "status": e.status, "val_bpb": e.val_bpb, "delta": e.delta,
                    "description": e.description} for e in exps]
        return AgentContext(
            script=self.run_dir.script.read_text(), history=history,
            best_val_bpb=best.val_bpb if best else None, noise_sigma=self._noise().sigma,
            profile=self.config.get("profile", {}), hardware=self.config.get("hardware_summary", ""),
            time_budget=float(self.config.get("profile", {}).get("time_budget", 0)),
            last_outcome=last_outcome, backend=self.backend, notes=self._notes(),
        )

    def _notes(self) -> list[str]:
        """The user's steering notes in force; each new one is acknowledged once in the log."""
        notes = self.ledger.notes()
        for note in notes:
            if note.id in self._notes_seen:
                continue
            self._notes_seen.add(note.id)
            if self.agent is not None and not self.agent.reads_notes:
                self.log(f"note ignored: {self.agent.name} does not read notes (it searches numbers): {note.text!r}")
            else:
                self.log(f"note for the researcher: {note.text!r}")
        return [n.text for n in notes]

    # -- control, signals, disk ---------------------------------------------------------------------------
    def _poll_control(self) -> None:
        """Take every queued command, in order; each is recorded with its id and what was done with it."""
        with self._control_lock:  # the loop and the training watcher both poll
            while True:
                msg = control.take(self.run_dir.state)
                if msg is None:
                    return
                outcome = self._obey(msg)
                sent = msg.get("ts")
                args = {k: msg[k] for k in ("index", "seeds") if k in msg} or None
                if msg["command"] == "retest" and args is not None:
                    args.setdefault("seeds", review.DEFAULT_RETEST_SEEDS)  # what it will do, recorded
                self.ledger.append(ControlTaken(command=msg["command"], id=msg.get("id"), outcome=outcome, args=args,
                                                sent=float(sent) if isinstance(sent, (int, float)) else None))

    def _obey(self, msg: dict[str, Any]) -> str:
        cmd = msg["command"]
        if cmd == "pause":
            if self._paused:
                return "ignored: already paused"
            self._paused = True
            self.ledger.append(Paused(reason="paused by the user"))
            self.log("paused (after the current experiment); `autoresearch resume` continues")
            return "done"
        if cmd == "resume":
            if not self._paused:
                return "ignored: not paused"
            self._paused = False
            self.ledger.append(Resumed())
            self.log("resumed")
            return "done"
        if cmd == "stop":
            self.request_stop(reason="stopped by the user after the experiment")
            self.log("will stop after the current experiment")
            return "done"
        if cmd == "stop-now":
            self.request_stop(now=True, reason="stopped by the user")
            return "done"
        if cmd in ("revert", "retest"):
            return self._check_request(msg)
        # skip
        if self._training and msg.get("ts", 0) >= self._train_started:
            self._skip = True
            self.runner.stop()
            return "done"
        self.log("skip ignored: no training was running when it was sent")
        return "ignored: no training was running when it was sent"

    def _check_request(self, msg: dict[str, Any]) -> str:
        """A revert or re-test is queued (carried out at the next boundary) unless it cannot be done."""
        index, seeds = msg.get("index"), msg.get("seeds", review.DEFAULT_RETEST_SEEDS)
        if not isinstance(index, int) or (msg["command"] == "retest" and (not isinstance(seeds, int) or seeds < 1)):
            return "refused: it needs an experiment index (and a retest a number of seeds)"
        try:
            (review.revertable_experiment if msg["command"] == "revert" else review.kept_experiment)(self.ledger, index)
        except review.ReviewError as e:
            self.log(f"{msg['command']} refused: {e}")
            return f"refused: {e}"
        self.log(f"{msg['command']} of experiment {index} queued: after the current experiment")
        return "queued"

    def _carry_out_requests(self) -> None:
        """Between experiments: the reverts and re-tests the user asked for, then a best nobody measured yet."""
        for req in self.ledger.requests():
            if self._stop or self._paused:
                return
            try:
                if req.command == "revert":
                    self._phase("reverting", req.index)
                    rev = review.apply_revert(self.run_dir, self.ledger, req.index, request=req.id)
                    self.log(f"[exp {rev.index}] reverted experiment {req.index}: {rev.reason}")
                else:
                    self._retest(req.index, req.seeds, request=req.id)
            except (review.ReviewError, RunError, OSError, git.GitCommandError) as e:  # never a request that fails forever
                self.ledger.append(ControlTaken(command=req.command, id=req.id, outcome=f"failed: {e}",
                                                args={"index": req.index}))
                self.log(f"{req.command} of experiment {req.index} failed: {e}")
        best = self.ledger.best()
        if best is not None and best.val_bpb is None and not self._stop and not self._paused:
            trained = self._retest(best.index, self.options.baseline_seeds or self.policy.baseline_seeds)
            best = self.ledger.best()
            if best is not None and best.val_bpb is None and trained and not self._stop:
                self.request_stop(reason=f"the best (experiment {best.index}) could not be measured: no training of it "
                                         f"succeeded (see its log); revert it or start a new run")

    def _retest(self, index: int, seeds: int, request: str | None = None) -> int:
        """``seeds`` more trainings of decided experiment ``index`` at its commit; then back to the best. Returns
        the trainings that ran to an outcome (a skip or a stop ends it early)."""
        exp = self.ledger.experiment(index)
        best = self.ledger.best()
        assert exp is not None and exp.commit and best is not None and best.commit
        self._phase("retesting", index, detail=f"{seeds} seed(s)")
        self.log(f"[exp {index}] re-testing with {seeds} more seed(s): {exp.description}")
        self.run_dir.reset_to(exp.commit)
        first = len(exp.trainings) + len(exp.superseded_trainings)
        attempt = first
        while self.run_dir.log_path(index, attempt).exists():
            attempt += 1  # never overwrite a log
        added = 0
        try:
            for i in range(seeds):
                r = self._train(index, first + i, attempt + i, purpose="retest")
                if r is None:
                    break
                added += 1
        finally:
            self._forget_trainings(index)
            self.run_dir.reset_to(best.commit)
        exp = self.ledger.experiment(index)
        assert exp is not None
        values = exp.ok_values
        mean = sum(values) / len(values) if values else None
        if added or not self._stop:  # (a stop leaves a request for the next start; a skip ends it)
            self.ledger.append(Remeasured(index=index, val_bpb=mean, seeds=added, request=request))
            self._update_noise()
            self.ledger.write_results_tsv()
            figure = f"{mean:.6f}" if mean is not None else "no successful training"
            self.log(f"[exp {index}] val_bpb over {len(values)} seed(s): {figure}")
        return added

    @contextlib.contextmanager
    def _agent_turn(self) -> Iterator[None]:
        """The agent writes (an HTTP call that may be silent for minutes): a stop asked for meanwhile, by a signal or
        a control command, abandons its reply within a poll (AgentInterrupted raised into the main thread)."""
        watcher = threading.Thread(target=self._watch_agent_turn, daemon=True)
        try:
            self._agent_busy = True  # (inside the try: a signal right after it still clears it)
            watcher.start()
            yield
        finally:
            self._agent_busy = False
            if watcher.is_alive():
                watcher.join(timeout=5)

    def _watch_agent_turn(self) -> None:
        while self._agent_busy:
            self._poll_control()
            if self._stop and self._agent_busy:
                self._interrupt_agent()
                return
            time.sleep(self.options.poll_interval)

    def _interrupt_agent(self) -> None:
        """Wake the main thread out of the agent's blocking read (only where install_signal_handlers set it up)."""
        if self._agent_busy and self._interrupt_signal is not None:
            signal.pthread_kill(threading.main_thread().ident, self._interrupt_signal)  # type: ignore[arg-type]

    def _watch_control(self) -> None:
        while self._training:
            self._poll_control()
            time.sleep(self.options.poll_interval)

    def _sleep(self, seconds: float) -> bool:
        """Wait, still obeying control commands; False when a stop came in."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._poll_control()
            if self._stop:
                return False
            time.sleep(min(self.options.poll_interval, max(0.0, end - time.monotonic())))
        return True

    def _disk_ok(self) -> bool:
        free_gb = free_bytes(self.run_dir.path) / 1024**3
        if free_gb >= self.options.disk_floor_gb:
            return True
        self.log(f"paused: only {free_gb:.2f} GB free on {self.run_dir.path} (floor {self.options.disk_floor_gb} GB). "
                 "Free some space; the run continues by itself.")
        return self._wait_for_space()

    def _wait_for_space(self, index: int | None = None) -> bool:
        """Pause until the run's disk has the floor free again (recorded as a pause where the ledger can still be
        written); False when a stop came first."""
        floor = self._floor_bytes
        free = free_bytes(self.run_dir.path)
        if free >= floor:
            return True
        with contextlib.suppress(OSError):  # (a disk with no room left for the ledger's line: still waited for)
            self.ledger.append(Paused(reason=f"disk: {gb(max(free, 0))} free, below {self.options.disk_floor_gb} GB"))
            self._phase("waiting_for_disk", index, detail=f"{gb(max(free, 0))} free")
        t0 = time.perf_counter()
        try:
            while free_bytes(self.run_dir.path) < floor:
                if not self._sleep(self.options.disk_poll_seconds):
                    return False
        finally:
            self._waited_seconds += time.perf_counter() - t0
        self.ledger.append(Resumed())
        self.log("disk space is back: resuming")
        return True


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
