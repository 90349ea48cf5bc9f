"""A recorded night as a real run directory, for the app's tests and snapshots (and benchmarks/tui.py).

The experiments are upstream's published overnight run (../shared/data/upstream-mar8-results.tsv: its
descriptions, val_bpb and memory, in order), with some discards turned into every other status the app
must show (crash, oom, nan, timeout, invalid, interrupted, and an open experiment: running or confirming).
Everything goes through the real components: RunDir.create (a real git repository, a real commit per
experiment with a knob changed in train.py, fixed commit dates so the hashes are stable) and the real
Ledger (fixed timestamps). Deterministic: the same directory, byte for byte, every time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from autoresearch.resources import template_path
from autoresearch.backends.knobs import read_knobs, set_knobs
from autoresearch.engine.events import (Decision, ExperimentInterrupted, ExperimentStarted, NoiseEstimated,
                                        RunStarted, Stopped, TrainingFinished, TrainingStarted)
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.rundir import RunDir

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout

UPSTREAM_TSV = REPO_ROOT.parent / "shared" / "data" / "upstream-mar8-results.tsv"
START = datetime(2026, 3, 8, 22, 0, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=6)
# rows of the recorded night whose discard becomes another status (index in the night -> status)
FAILURES = {3: "crash", 9: "oom", 12: "nan", 17: "timeout", 20: "invalid", 26: "interrupted", 30: "crash"}
REASONS = {
    "crash": "exit status 1: AttributeError: 'GPT' object has no attribute 'embedding'",
    "oom": "ran out of memory",
    "nan": "training loss is nan at step 412: the run diverged",
    "timeout": "killed after 420s (budget + start-up + evaluation allowance)",
    "invalid": "the model's logits at position t changed when later tokens changed: it sees the future",
    "interrupted": "skipped by the user",
}
# knobs an experiment's commit changes, cycled (so every diff is a real one-line change of train.py)
KNOB_EDITS = [("WARMDOWN_FRAC", [0.6, 0.7, 0.4]), ("MATRIX_LR", [0.05, 0.03, 0.045]), ("EMBED_LR", [0.8, 0.7, 0.5]),
              ("UNEMBED_LR", [0.006, 0.008, 0.003]), ("WEIGHT_DECAY", [0.1, 0.2, 0.05]),
              ("MLP_RATIO", [3, 5, 2]), ("FINAL_LR_FRAC", [0.05, 0.1, 0.02])]


def ts(n: float) -> str:
    t = START + n * STEP
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def recorded_night(limit: int = 40) -> list[tuple[str, float | None, float | None, str]]:
    """(description, val_bpb, memory_gb, status) of upstream's night, first ``limit`` rows after the header."""
    rows = []
    for line in UPSTREAM_TSV.read_text().splitlines()[1:]:
        commit, val, mem, status, desc = line.split("\t")[:5]
        rows.append((desc, float(val) or None, float(mem) or None, status))
    return rows[:limit]


def build(path: Path, *, experiments: int = 40, open_status: str | None = "confirming", stopped: bool = False,
          worse_on_test: tuple[int, ...] = ()) -> RunDir:
    """A run directory at ``path`` with ``experiments`` recorded experiments (the baseline first) and, with
    ``open_status`` ("running" or "confirming"), one more still open at the end. The kept experiments listed in
    ``worse_on_test`` improved val_bpb but not the held-out test split."""
    os.environ["GIT_AUTHOR_DATE"] = os.environ["GIT_COMMITTER_DATE"] = "1773007200 +0000"
    try:
        return _build(path, experiments, open_status, stopped, worse_on_test)
    finally:
        os.environ.pop("GIT_AUTHOR_DATE", None)
        os.environ.pop("GIT_COMMITTER_DATE", None)


def _build(path: Path, experiments: int, open_status: str | None, stopped: bool, worse_on_test: tuple[int, ...]) -> RunDir:
    template = template_path("torch").read_text()
    config = {"backend": "torch", "dataset": "climbmix", "policy": "noise", "seed": 0, "deadline_seconds": 420,
              "agent": "ollama:qwen2.5-coder:14b", "hardware_summary": "NVIDIA H100 80GB HBM3 (80 GB), 26 CPU threads",
              "profile": {"name": "datacenter-cuda", "time_budget": 300, "device": "cuda", "seq_len": 2048},
              # recorded on another machine: its data is not here (an engine started on it stops at once, and says so)
              "data_dir": "/nonexistent/autoresearch/data/climbmix-v8192", "manifest_digest": "9f" * 32}
    run = RunDir.create(path, template, config, {"time_budget": 300})
    (run.state / "logs").mkdir(exist_ok=True)
    ledger = Ledger(run.path)
    events: list = [RunStarted(pid=4242, host="h100-box", version="0.1.0", resumed=False, ts=ts(0))]
    night = recorded_night(experiments + (1 if open_status else 0))
    best_commit = run.head()
    best_val = None
    source = template
    n = 0.0
    for i, (desc, val, mem, status) in enumerate(night):
        is_open = open_status is not None and i == len(night) - 1
        status = FAILURES.get(i, status) if status == "discard" else status
        n += 1
        if i == 0:
            commit, parent, kind = best_commit, None, "baseline"
        else:
            name, values = KNOB_EDITS[i % len(KNOB_EDITS)]
            current = read_knobs(source)[name].value
            value = next((v for v in values if v != current), values[0])
            candidate = set_knobs(source, {name: value})
            commit = run.commit_script(candidate, desc, i)
            parent, kind = best_commit, "agent"
        events.append(ExperimentStarted(index=i, kind=kind, parent=parent, commit=commit, description=desc,
                                        ts=ts(n - 0.9)))
        if is_open:
            _open_experiment(run, events, i, val, open_status, n)
            break
        seeds = 2 if i == 0 or status == "keep" else 1
        for s in range(seeds):
            log = f"logs/{i:04d}{'-' + str(s) if s else ''}.log"
            (run.state / log).write_text(_log_text(val, status))
            events.append(TrainingStarted(index=i, attempt=s, seed=s, log=log,
                                          purpose="baseline" if i == 0 else ("confirm" if s else "experiment"),
                                          budget_seconds=300, ts=ts(n - 0.8 + 0.35 * s)))
            ok = status in ("keep", "discard")
            v = None if not ok else (val or 0) + (0.0004 if s else -0.0004) * (1 if i % 2 else -1)
            events.append(TrainingFinished(index=i, seed=s, outcome="ok" if ok else status, val_bpb=v,
                                           metrics={"training_seconds": 300.0 if ok else 120.0, "num_steps": 953,
                                                    "peak_memory_mb": (mem or 44.0) * 1024},
                                           wall_seconds=331.0, log=log, reason=REASONS.get(status, ""),
                                           ts=ts(n - 0.45 + 0.35 * s)))
        if i == 0:
            events.append(NoiseEstimated(sigma=0.0007, dof=1, source="repeats", ts=ts(n - 0.05)))
        if status == "interrupted":
            events.append(ExperimentInterrupted(index=i, reason=REASONS["interrupted"], ts=ts(n)))
        else:
            delta = None if i == 0 or val is None or best_val is None or status not in ("keep", "discard") else val - best_val
            events.append(Decision(index=i, status=status, val_bpb=val if status in ("keep", "discard") else None,
                                   delta=delta, reason="baseline" if i == 0 else REASONS.get(status, f"{status} by the noise policy"),
                                   test_bpb=_test_bpb(i, val, best_val, status, worse_on_test), ts=ts(n)))
        if status == "keep":
            best_commit, best_val, source = commit, val, run.repo.git.show(f"{commit}:train.py") + "\n"
        elif i:
            run.reset_to(best_commit)
    if stopped:
        events.append(Stopped(reason="stopped by the user after the experiment", ts=ts(n + 0.2)))
    ledger.append_many(events)
    ledger.write_results_tsv()
    return run


def _test_bpb(i: int, val: float | None, best_val: float | None, status: str, worse: tuple[int, ...]) -> float | None:
    if status != "keep" or not val:
        return None
    if i in worse and best_val is not None:
        return best_val + 0.021 + 0.002  # the parent's test figure, and a bit worse
    return val + 0.021


def _open_experiment(run: RunDir, events: list, i: int, val: float | None, open_status: str, n: float) -> None:
    """The experiment in flight: its first training running, or (confirming) a second seed after a good first."""
    first = f"logs/{i:04d}.log"
    events.append(TrainingStarted(index=i, attempt=0, seed=0, log=first, purpose="experiment", budget_seconds=300,
                                  ts=ts(n - 0.8)))
    if open_status == "running":
        (run.state / first).write_text(_log_text(val, "running"))
        return
    (run.state / first).write_text(_log_text(val, "discard"))
    events.append(TrainingFinished(index=i, seed=0, outcome="ok", val_bpb=val, metrics={"training_seconds": 300.0},
                                   wall_seconds=331.0, log=first, ts=ts(n - 0.45)))
    second = f"logs/{i:04d}-1.log"
    (run.state / second).write_text(_log_text(val, "running"))
    events.append(TrainingStarted(index=i, attempt=1, seed=1, log=second, purpose="confirm", budget_seconds=300,
                                  ts=ts(n - 0.4)))


def _log_text(val: float | None, status: str) -> str:
    lines = ["model: 50.34M parameters, depth 8, width 512, 1 x 128 x 2048 tokens per step on cuda"]
    for step in range(0, 960, 40):
        lines.append(f"step {step:05d} | {100 * step / 953:5.1f}% | loss {3.9 - step / 400:.4f} | 1,712,000 tok/s | "
                     f"remaining {300 - step * 300 / 953:.0f}s")
    if status in ("crash",):
        lines += ["Traceback (most recent call last):", '  File "train.py", line 188, in forward',
                  "AttributeError: 'GPT' object has no attribute 'embedding'"]
    elif status != "running":
        lines += ["---", f"val_bpb:          {val or 0:.6f}", "training_seconds: 300.0", "status:           ok"]
    return "\n".join(lines) + "\n"
