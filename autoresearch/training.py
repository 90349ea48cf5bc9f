"""One training run outside the research loop: `autoresearch train` (baselines, smoke tests, demos)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from . import config as config_mod
from . import paths
from .backends.knobs import render_for_profile
from .backends import get_backend, harness_config, python_executable, training_env
from .engine.runner import Runner, RunResult
from .hardware import Profile, detect, profile_for
from .harness.prepare import load_prepared

STARTUP_ALLOWANCE = {False: 60.0, True: 300.0}  # seconds before training starts, without / with compile


def deadline_for(profile: Profile) -> float:
    """Hard wall-clock limit of one training: budget + start-up + evaluation allowances."""
    # val and the held-out test split are both scored (up to eval_tokens each), plus the causality check
    eval_allowance = 60.0 + 2 * profile.eval_tokens / 20_000 * (0.1 if profile.device != "cpu" else 1.0)
    return profile.time_budget * 1.1 + STARTUP_ALLOWANCE[profile.compile] + eval_allowance


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
    overrides = dict(settings.profile_overrides)
    overrides.update({k: v for k, v in dict(dataset=dataset, vocab_size=vocab, time_budget=budget, backend=backend).items() if v is not None})
    hw = detect()
    profile = profile_for(hw, overrides)
    chosen = get_backend(profile.backend)
    prepared = load_prepared(profile.dataset, profile.vocab_size, root=settings.data_dir)
    work = (work_dir or paths.cache_dir() / "scratch" / time.strftime("train-%Y%m%d-%H%M%S")).resolve()
    (work / ".autoresearch").mkdir(parents=True, exist_ok=True)
    if script is not None:
        shutil.copyfile(script, work / "train.py")
    else:  # the template, with the profile's model scale and batch sizes in its knobs
        (work / "train.py").write_text(render_for_profile(chosen.template().read_text(), profile))
    harness_json = work / ".autoresearch" / "harness.json"
    harness_config(profile, prepared.directory, prepared.manifest, seed=seed).write(harness_json)
    metrics = work / ".autoresearch" / "metrics.json"
    if on_line:
        on_line(f"profile {profile.name}: {profile.backend} on {profile.device}, {profile.time_budget:.0f}s budget, "
                f"data {prepared.manifest.dataset} (vocab {prepared.manifest.vocab_size}), in {work}")
    return Runner().run(
        [python_executable(), "train.py"],
        cwd=work,
        env=training_env(harness_json, metrics, seed, backend=profile.backend),
        log_path=work / ".autoresearch" / "train.log",
        metrics_path=metrics,
        deadline_seconds=deadline_for(profile),
        on_line=on_line,
    )
