"""Planning one training on this machine: the profile, its prepared data, the harness settings, the script.

Shared by run creation (:mod:`autoresearch.engine.create`) and `autoresearch train` (:mod:`.once`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import get_backend, harness_config
from ..backends.knobs import render_for_profile
from ..hardware import Hardware, Profile, detect, profile_for
from ..harness.prepare import Prepared, load_prepared
from ..harness.session import HarnessConfig

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
