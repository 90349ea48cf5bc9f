"""One trial of a train script across the trust boundary: train it, take its weights, score them elsewhere.

    data server (this process) --batches--> training process (agent code, confined) --weights-->
    scorer process (trusted, fresh) --input rows--> serving processes (agent code, confined) --logits-->
    scorer --result (its own pipe)--> this process

What the agent's processes print or write is never a result: the training figures (tokens, steps, seconds)
are the data server's, the score is the scorer's, read from the scorer's standard output only. The training
must hand its weights back within a grace period after its last batch; a process it leaves behind is killed
(see :mod:`autoresearch.harness.sandbox`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

from .. import paths
from ..harness.dataserver import Account, start_server
from ..harness.sandbox import Policy, availability, device_paths, system_read_paths
from ..harness.session import (DATA_FD_ENV, HARNESS_ENV, ROLE_ENV, WEIGHTS_ENV, HarnessConfig)
from ..harness.wire import pair
from .runner import Runner, RunResult, kill_tree, log_tail

SCRIPT = "train.py"


@dataclass
class TrialSpec:
    """What one trial needs: where the script is, its harness settings (trusted, with the data), its files."""

    script_dir: Path  # holds train.py; the processes' working directory
    work_dir: Path  # this trial's own files: the training's harness.json, weights, policies, temp
    harness: HarnessConfig  # the trusted copy (data_dir set)
    log_path: Path
    deadline_seconds: float  # the training process, start to exit
    eval_deadline_seconds: float = 900.0  # the scorer, start to result
    env: dict[str, str] | None = None  # the agent's environment (backends.agent_env)
    splits: tuple[str, ...] = ("val",)  # scored now; the test split is scored later, for a candidate to keep
    keep_weights: bool = False  # leave the weights (to score the test split later: see score_held_out)
    # the early-stop judge: given the loss curve so far (after each new point, on the data server's thread), the
    # reason to end the training now as hopeless, or '' to let it go on (engine.earlystop)
    judge: Callable[[list[tuple[float, float]]], str] | None = None
    # how much longer than deadline_seconds the training may take on the machine as loaded now (the engine's
    # ContentionMonitor.stretch): a slow start on a busy machine is not the change's timeout
    deadline_stretch: Callable[[], float] | None = None


def _policies(spec: TrialSpec, weights: Path, harness_json: Path, tmp: Path) -> tuple[Policy, dict[str, Policy]]:
    """(training, {serving process: policy}): what each process of the agent's code may read and write. Each
    serving process writes only its own temp directory (MLX's CPU backend compiles kernels there), so the two
    cannot leave each other anything."""
    base = system_read_paths()
    packages = _package_dirs(spec.env)
    script = str(spec.script_dir / SCRIPT)
    compile_cache = paths.cache_dir() / "compile"
    for sub in ("inductor", "triton"):  # made here: the training may write beneath, not create the cache's parents
        (compile_cache / sub).mkdir(parents=True, exist_ok=True)
    compile_cache = str(compile_cache)
    train = Policy(read=base + packages, read_dir=[str(spec.script_dir)], read_file=[script, str(harness_json)],
                   write=[str(spec.work_dir / "out"), str(tmp), compile_cache], devices=device_paths())
    # the serving processes start before the weights exist: they may read the directory the weights go to
    serve = {which: Policy(read=base + packages + [compile_cache, str(weights.parent)], read_dir=[str(spec.script_dir)],
                           read_file=[script, str(harness_json)], write=[str(spec.work_dir / f"serve-{which}")],
                           devices=device_paths()) for which in ("A", "B")}
    return train, serve


_PACKAGE_DIRS: dict[str, list[str]] = {}


def _package_dirs(env: dict[str, str] | None) -> list[str]:
    """Where the agent's processes will import autoresearch from: this process's package, and the one their own
    interpreter finds (an editable install elsewhere can take precedence over PYTHONPATH), asked once."""
    here = str(Path(__file__).resolve().parents[1])
    key = (env or {}).get("PYTHONPATH", "")
    if key not in _PACKAGE_DIRS:
        found = [here]
        try:
            out = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('autoresearch').origin)"],
                                 env=env, capture_output=True, text=True, timeout=30)
            origin = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
            if origin:
                found.append(str(Path(origin).resolve().parent))
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
        _PACKAGE_DIRS[key] = sorted(set(found))
    return _PACKAGE_DIRS[key]


def exposed_data(data_dir: str) -> str | None:
    """The readable root that holds the data directory (the training could read the val split), or None."""
    data = Path(data_dir).resolve()
    for root in system_read_paths() + [str(Path(__file__).resolve().parents[1]), str(paths.cache_dir() / "compile")]:
        try:
            data.relative_to(Path(root).resolve())
        except ValueError:
            continue
        return root
    return None


def run_trial(spec: TrialSpec, runner: Runner, *, on_line: Callable[[str], None] | None = None,
              pid_file: Path | None = None, on_phase: Callable[[str], None] | None = None) -> RunResult:
    """Train, then score. The RunResult's metrics are the data server's and the scorer's figures only."""
    work = spec.work_dir
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    tmp = work / "tmp"
    tmp.mkdir()
    weights = work / "out" / "weights.safetensors"
    harness_json = work / "harness.json"
    spec.harness.for_training().write(harness_json)
    train_policy, serve_policies = _policies(spec, weights, harness_json, tmp)
    (work / "train-policy.json").write_text(train_policy.to_json())
    for which, policy in serve_policies.items():
        (work / f"serve-{which}").mkdir()
        (work / f"serve-{which}.json").write_text(policy.to_json())
    env = dict(spec.env if spec.env is not None else os.environ)
    env.update({HARNESS_ENV: str(harness_json), WEIGHTS_ENV: str(weights), "TMPDIR": str(tmp),
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})
    launcher = [sys.executable, "-m", "autoresearch.harness.sandbox"]

    cfg = spec.harness
    scorer: list[Scorer] = []

    # The scorer starts as soon as the budget is spent, beside the training's last step, where the training leaves
    # the CPU free (a GPU). A CPU training uses every core: three interpreters starting beside it slowed its last
    # step 2-4x on 2 cores (7.1 s against 1.9 s), and an honest script with 1.9 s steps handed its weights back
    # past the grace, marked invalid. There the scorer starts when the training has exited.
    overlap = cfg.device != "cpu"

    def training_ends() -> None:  # the data server's thread: the budget is spent (or the script is done)
        if overlap and not runner.interrupted:
            scorer.append(Scorer(spec, runner, weights, env, launcher))

    def weights_in(account: Account) -> None:  # the data server's thread: go at once, not after the process exits
        if scorer and weights.exists() and account.late_by() is None:
            scorer[0].go()

    channel, theirs = pair()
    server, thread = start_server(channel, data_dir=cfg.data_dir, seq_len=cfg.seq_len, vocab_size=cfg.vocab_size,
                                  seed=cfg.seed, budget=cfg.time_budget, uncounted_steps=cfg.uncounted_steps,
                                  max_steps=cfg.max_steps, on_end=training_ends, on_done=weights_in,
                                  weights_path=str(weights))
    if spec.judge is not None:
        judge = spec.judge

        def on_curve(account: Account) -> None:  # the data server's thread
            reason = judge(list(account.curve))
            if reason:
                runner.end_early(reason)

        server.on_curve = on_curve
    train_env = dict(env, **{ROLE_ENV: "train", DATA_FD_ENV: str(theirs.fileno()),
                             "AUTORESEARCH_PASS_FDS": str(theirs.fileno())})
    try:
        result = runner.run([*launcher, str(work / "train-policy.json"), "--", sys.executable, SCRIPT],
                            cwd=spec.script_dir, env=train_env, log_path=spec.log_path,
                            deadline_seconds=spec.deadline_seconds, on_line=on_line, pid_file=pid_file,
                            pass_fds=(theirs.fileno(),), deadline_stretch=spec.deadline_stretch)
    finally:
        theirs.close()
    thread.join(timeout=10)
    account = server.account
    metrics = _training_metrics(account, cfg)
    result.metrics = metrics
    verdict = _training_verdict(result, account, weights, server.error)
    if verdict is not None:
        for s in scorer:
            s.cancel()
        result.status, result.reason = verdict
        _summary(spec.log_path, result)
        return result
    if on_phase is not None:
        on_phase("evaluating")
    scored = (scorer[0] if scorer else Scorer(spec, runner, weights, env, launcher)).result()
    result.wall_seconds += float(scored.get("wall_seconds", 0.0))
    metrics.update({k: scored[k] for k in ("eval_seconds", "num_params", "causality_max_diff", "probes", "eval_tokens",
                                           "timing") if k in scored})
    metrics["scoring_seconds"] = round(float(scored.get("wall_seconds", 0.0)), 3)
    if metrics.get("flops_per_token") and cfg.peak_flops and metrics.get("tokens_per_second"):
        metrics["mfu_percent"] = round(100 * metrics["flops_per_token"] * metrics["tokens_per_second"] / cfg.peak_flops, 2)
    status = str(scored.get("status") or "crash")
    if runner.interrupted:
        result.status, result.reason = "interrupted", "stopped during the evaluation"
    elif status == "ok" and (isinstance(scored.get("val_bpb"), (int, float)) or "val" not in spec.splits):
        result.status, result.reason = "ok", ""
        if isinstance(scored.get("val_bpb"), (int, float)):
            metrics["val_bpb"] = float(scored["val_bpb"])
        test = scored.get("test_bpb")
        result.test_bpb = float(test) if isinstance(test, (int, float)) else None
    else:
        result.status = status if status in ("nan", "invalid", "crash", "timeout", "oom") else "crash"
        result.reason = str(scored.get("reason") or "the evaluation gave no result")
    metrics["status"] = result.status
    metrics["reason"] = result.reason
    result.tail = log_tail(spec.log_path)
    if spec.keep_weights and result.status == "ok":
        result.held_out = HeldOut(spec, weights, env, launcher)
    else:
        weights.unlink(missing_ok=True)
    _summary(spec.log_path, result)
    return result


@dataclass
class HeldOut:
    """What scoring a training's weights on the held-out test split later needs (kept while it may be needed)."""

    spec: TrialSpec
    weights: Path
    env: dict[str, str]
    launcher: list[str]


def score_held_out(result: RunResult, runner: Runner) -> float | None:
    """The test_bpb of a training whose weights were kept (a candidate the policy would keep); never shown to the
    agent. None when there is no test split, the weights are gone, or the scoring failed (said in the log)."""
    held = result.held_out
    if held is None or not held.weights.exists() or not held.spec.harness.test_tokens:
        return None
    scored = Scorer(held.spec, runner, held.weights, held.env, held.launcher, splits=("test",), wait_for_go=False).result()
    value = scored.get("test_bpb")
    if scored.get("status") != "ok" or not isinstance(value, (int, float)):
        with open(held.spec.log_path, "a", encoding="utf-8") as log:
            log.write(f"harness: the held-out test split could not be scored: {scored.get('reason')}\n")
        return None
    return float(value)


def discard_weights(result: RunResult) -> None:
    if result.held_out is not None:
        result.held_out.weights.unlink(missing_ok=True)
        result.held_out = None


def _training_metrics(a: Account, cfg: HarnessConfig) -> dict[str, Any]:
    meta = a.meta
    m: dict[str, Any] = {
        "backend": cfg.backend, "device": cfg.device, "seed": cfg.seed, "time_budget": cfg.time_budget,
        "training_seconds": round(a.training_seconds, 3), "num_steps": a.steps, "total_tokens": a.tokens,
        "tokens_per_second": round(a.tokens_per_second, 1), "warmup_batches": a.warmup_batches,
        "stopped_by": a.stopped_by, "grace_seconds": round(a.grace(), 1),
    }
    if a.curve:
        m["loss_curve"] = [list(point) for point in a.curve]
    if a.t_done is not None and a.t_last_batch is not None:
        m["handback_seconds"] = round(a.t_done - a.t_last_batch, 3)
    for key in ("peak_memory_mb", "depth", "flops_per_token", "last_loss"):  # what the script says: informational
        if isinstance(meta.get(key), (int, float)):
            m[key] = meta[key]
    return m


def _training_verdict(result: RunResult, a: Account, weights: Path, server_error: BaseException | None) -> tuple[str, str] | None:
    """(status, reason) when the training itself failed or broke the rules; None when its weights may be scored."""
    if server_error is not None:
        return "crash", f"the data server failed: {type(server_error).__name__}: {server_error}"
    if result.status in ("interrupted", "early_stop", "timeout", "oom"):
        return result.status, result.reason
    if a.failure is not None:
        return a.failure[0] if a.failure[0] in ("nan", "invalid") else "crash", a.failure[1]
    if result.status == "crash":
        return "crash", result.reason
    if a.batches == 0:
        return "invalid", "the script never trained on the data (no batch after the warm-up steps)"
    if a.t_done is None or not weights.exists():
        return "invalid", "the script exited without handing back its weights (did it call H.finish(model)?)"
    late = a.late_by()
    if late is not None:
        return "invalid", (f"the weights came {a.t_done - (a.t_last_batch or a.t_start or a.t_done):.1f}s after the last "
                           f"batch (at most {a.grace():.0f}s is allowed): training must happen on the harness's clock")
    return None


class Scorer:
    """The scorer process of one trial. Started as soon as the training's end is in sight where the training leaves
    the CPU free (its start-up and its serving processes' then overlap the training's last step), else when the
    training has exited, it waits for ``go`` (the training's weights are in and were handed back by the rules) or
    is killed. Its result is the JSON line on its standard output."""

    def __init__(self, spec: TrialSpec, runner: Runner, weights: Path, env: dict[str, str], launcher: list[str],
                 splits: tuple[str, ...] | None = None, wait_for_go: bool = True) -> None:
        cfg = spec.harness
        job = {"data_dir": cfg.data_dir, "seq_len": cfg.seq_len, "vocab_size": cfg.vocab_size,
               "eval_tokens": cfg.eval_tokens, "test_tokens": cfg.test_tokens,
               "batch_size": cfg.eval_batch_size or 8, "device": cfg.device if cfg.backend == "torch" else "cpu",
               "weights": str(weights), "log": str(spec.log_path), "wait_for_go": wait_for_go,
               "splits": list(splits if splits is not None else spec.splits),
               "serving": {which: {"argv": [*launcher, str(spec.work_dir / f"serve-{which}.json"), "--", sys.executable,
                                            SCRIPT],
                                   "env": {**env, "TMPDIR": str(spec.work_dir / f"serve-{which}")}}
                           for which in ("A", "B")},
               "cwd": str(spec.script_dir)}
        self.t0 = time.monotonic()
        self.deadline = spec.eval_deadline_seconds
        self._went = False
        trusted_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        trusted_env["PYTHONPATH"] = env.get("PYTHONPATH", "")
        with open(spec.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "autoresearch.harness.scorer"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, start_new_session=True, env=trusted_env)
        _lower_priority(self.proc.pid)
        runner.watch(self.proc)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()

    def cancel(self) -> None:
        kill_tree(self.proc.pid)
        self.proc.wait()

    def go(self) -> None:
        """The weights are in: the scorer may start (once)."""
        if self._went:
            return
        self._went = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # it already ended (its output says why), or was not waiting

    def result(self) -> dict[str, Any]:
        """Say go (if not yet), and wait for the result (killed at the deadline)."""
        out: dict[str, bytes] = {}
        self.go()
        reader = threading.Thread(target=lambda: out.update(data=self.proc.stdout.read() if self.proc.stdout else b""),
                                  daemon=True)
        reader.start()
        reader.join(timeout=max(1.0, self.deadline - (time.monotonic() - self.t0)))
        if reader.is_alive():
            kill_tree(self.proc.pid)
            reader.join(timeout=10)
            return {"status": "timeout", "reason": f"the evaluation took more than {self.deadline:.0f}s",
                    "wall_seconds": time.monotonic() - self.t0}
        self.proc.wait()
        lines = [ln for ln in out.get("data", b"").decode("utf-8", "replace").splitlines() if ln.strip()]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if not isinstance(result, dict) or not result:
            result = {"status": "crash", "reason": f"the scorer gave no result (exit status {self.proc.returncode})"}
        result["wall_seconds"] = time.monotonic() - self.t0
        return result


# The scorer (and the serving processes it starts, which inherit it) runs at a lower priority: where it starts
# beside the training's last step (see run_trial) it must not take the CPU the training's own side needs (its data
# requests, its Python). Alone on the machine a lower priority costs nothing.
SCORER_NICE = 10


def _lower_priority(pid: int) -> None:
    try:
        psutil.Process(pid).nice(SCORER_NICE)
    except (psutil.Error, OSError, ValueError):  # not allowed, or gone already: it only starts sooner
        pass


def _summary(log_path: Path, result: RunResult) -> None:
    """The greppable `---` block at the end of the log, written by the trusted side (not the script)."""
    m = result.metrics
    rows = [("val_bpb", f"{m['val_bpb']:.6f}" if isinstance(m.get("val_bpb"), float) else "-"),
            ("training_seconds", f"{m.get('training_seconds', 0):.1f}"),
            ("total_seconds", f"{result.wall_seconds:.1f}"),
            ("peak_memory_mb", f"{m['peak_memory_mb']:.1f}" if isinstance(m.get("peak_memory_mb"), (int, float)) else "-")]
    if "mfu_percent" in m:
        rows.append(("mfu_percent", f"{m['mfu_percent']:.2f}"))
    rows += [("total_tokens_M", f"{m.get('total_tokens', 0) / 1e6:.2f}"), ("num_steps", str(m.get("num_steps", 0)))]
    if isinstance(m.get("num_params"), int):
        rows.append(("num_params_M", f"{m['num_params'] / 1e6:.2f}"))
    if m.get("depth") is not None:
        rows.append(("depth", str(m["depth"])))
    rows += [("backend", str(m.get("backend"))), ("device", str(m.get("device"))), ("status", result.status)]
    if result.reason:
        rows.append(("reason", result.reason))
    with open(log_path, "a", encoding="utf-8") as f:
        f.write("---\n" + "".join(f"{k + ':':<18}{v}\n" for k, v in rows))


def confinement_line() -> str:
    return availability().summary()


def run_script(source: str, harness: HarnessConfig, work: Path, *, deadline_seconds: float | None = None,
               on_line: Callable[[str], None] | None = None, env: dict[str, str] | None = None,
               runner: Runner | None = None) -> RunResult:
    """One trial of ``source`` (a train script's text) in ``work``: for `autoresearch train`, tests and benchmarks."""
    from ..backends import agent_env

    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / SCRIPT).write_text(source)
    deadline = deadline_seconds if deadline_seconds is not None else harness.time_budget * 3 + 300
    spec = TrialSpec(script_dir=work, work_dir=work / ".trial", harness=harness, log_path=work / "train.log",
                     deadline_seconds=deadline, eval_deadline_seconds=max(300.0, deadline),
                     env=env if env is not None else agent_env(backend=harness.backend))
    return run_trial(spec, runner or Runner(), on_line=on_line)
