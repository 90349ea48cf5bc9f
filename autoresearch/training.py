"""Planning a training on this machine (shared by run creation), and `autoresearch train`: one training outside the loop."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import config as config_mod
from . import paths
from .backends import get_backend, harness_config, python_executable, training_env
from .backends.knobs import render_for_profile
from .engine.runner import Runner, RunResult
from .hardware import Hardware, Profile, detect, profile_for
from .harness.prepare import Prepared, load_prepared
from .harness.session import HarnessConfig

STARTUP_ALLOWANCE = {False: 60.0, True: 300.0}  # seconds before training starts, without / with compile


def deadline_for(profile: Profile) -> float:
    """Hard wall-clock limit of one training: budget + start-up + evaluation allowances."""
    # val and the held-out test split are both scored (up to eval_tokens each), plus the causality check
    eval_allowance = 60.0 + 2 * profile.eval_tokens / 20_000 * (0.1 if profile.device != "cpu" else 1.0)
    return profile.time_budget * 1.1 + STARTUP_ALLOWANCE[profile.compile] + eval_allowance


@dataclass
class TrainingPlan:
    """What one training on this machine will be: the profile, its data, the harness settings, the script."""

    hardware: Hardware
    profile: Profile
    prepared: Prepared
    harness: HarnessConfig
    source: str  # the backend's template with the profile's model scale and batch sizes in its knobs


def plan_training(overrides: dict[str, Any], data_root: Path | None, seed: int = 0) -> TrainingPlan:
    """Detect the machine, apply overrides (None values ignored), find the prepared data, render the template."""
    hw = detect()
    profile = profile_for(hw, overrides)
    chosen = get_backend(profile.backend)
    prepared = load_prepared(profile.dataset, profile.vocab_size, root=data_root)
    harness = harness_config(profile, prepared.directory, prepared.manifest, seed=seed)
    return TrainingPlan(hw, profile, prepared, harness, render_for_profile(chosen.template().read_text(), profile))


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
    (work / ".autoresearch").mkdir(parents=True, exist_ok=True)
    if script is not None:
        shutil.copyfile(script, work / "train.py")
    else:
        (work / "train.py").write_text(plan.source)
    harness_json = work / ".autoresearch" / "harness.json"
    plan.harness.write(harness_json)
    metrics = work / ".autoresearch" / "metrics.json"
    if on_line:
        on_line(f"profile {profile.name}: {profile.backend} on {profile.device}, {profile.time_budget:.0f}s budget, "
                f"data {manifest.dataset} (vocab {manifest.vocab_size}), in {work}")
    return Runner().run(
        [python_executable(), "train.py"],
        cwd=work,
        env=training_env(harness_json, metrics, seed, backend=profile.backend),
        log_path=work / ".autoresearch" / "train.log",
        metrics_path=metrics,
        deadline_seconds=deadline_for(profile),
        on_line=on_line,
    )
