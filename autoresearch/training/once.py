"""`autoresearch train`: one training of the template (or a given script) with the harness, outside any run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from .. import config as config_mod
from .. import paths
from ..backends import agent_env
from ..hardware import with_flags
from .plan import deadline_for, plan_training
from .runner import Runner, RunResult
from .trial import TrialSpec, confinement_line, run_trial


def train_once(
    *,
    dataset: str | None = None,
    vocab: int | None = None,
    budget: float | None = None,
    backend: str | None = None,
    seed: int = 0,
    script: Path | None = None,
    work_dir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> RunResult:
    settings = config_mod.load()
    overrides = with_flags(settings.profile_overrides, dataset=dataset, vocab_size=vocab, time_budget=budget, backend=backend)
    plan = plan_training(overrides, settings.data_dir, seed)
    profile, manifest = plan.profile, plan.prepared.manifest
    work = (work_dir or paths.cache_dir() / "scratch" / time.strftime("train-%Y%m%d-%H%M%S")).resolve()
    state = work / paths.STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    if script is not None:
        shutil.copyfile(script, work / "train.py")
    else:
        (work / "train.py").write_text(plan.source)
    harness_json = state / "harness.json"
    plan.harness.write(harness_json)
    if on_line:
        on_line(f"profile {profile.name}: {profile.backend} on {profile.device}, {profile.time_budget:.0f}s budget, "
                f"data {manifest.dataset} (vocab {manifest.vocab_size}), in {work}")
        on_line(f"sandbox: {confinement_line()}")
    deadline = deadline_for(profile)
    spec = TrialSpec(script_dir=work, work_dir=state / "trial", harness=plan.harness, log_path=state / "train.log",
                     deadline_seconds=deadline, eval_deadline_seconds=max(300.0, deadline),
                     env=agent_env(backend=profile.backend))
    return run_trial(spec, Runner(), on_line=on_line)
