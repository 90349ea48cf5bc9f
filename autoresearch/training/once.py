"""`autoresearch train`: one training of the template (or a given script) with the harness, outside any run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from .. import config as config_mod
from .. import paths
from ..backends import python_executable, training_env
from .plan import deadline_for, plan_training
from .runner import Runner, RunResult


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
    overrides = dict(settings.profile_overrides, dataset=dataset, vocab_size=vocab, time_budget=budget, backend=backend)
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
    metrics = state / "metrics.json"
    if on_line:
        on_line(f"profile {profile.name}: {profile.backend} on {profile.device}, {profile.time_budget:.0f}s budget, "
                f"data {manifest.dataset} (vocab {manifest.vocab_size}), in {work}")
    return Runner().run(
        [python_executable(), "train.py"],
        cwd=work,
        env=training_env(harness_json, metrics, seed, backend=profile.backend),
        log_path=state / "train.log",
        metrics_path=metrics,
        deadline_seconds=deadline_for(profile),
        on_line=on_line,
    )
