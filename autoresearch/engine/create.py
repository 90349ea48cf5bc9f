"""Create a run directory from the machine's profile and flags, or reopen an existing one."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..hardware import Hardware, with_flags
from .. import paths
from ..training.plan import deadline_for, plan_training
from .rundir import RunDir, RunError


def default_tag(runs_dir: Path, prefix: str = "") -> str:
    base = prefix + time.strftime("%b%d").lower()  # e.g. nov28, like upstream's run tags
    tag, n = base, 2
    while (runs_dir / tag).exists():
        tag, n = f"{base}-{n}", n + 1
    return tag


def hardware_summary(hw: Hardware) -> str:
    if hw.cuda:
        return f"{hw.cuda.name} ({hw.cuda.memory_gb} GB), {hw.cpu_threads} CPU threads"
    if hw.apple_chip:
        return f"{hw.apple_chip}, {hw.ram_gb} GB unified memory"
    return f"CPU only: {hw.cpu_model}, {hw.cpu_threads} threads, {hw.ram_gb} GB RAM"


def open_or_create(
    runs_dir: Path,
    tag: str | None,
    *,
    dataset: str | None = None,
    backend: str | None = None,
    budget: float | None = None,
    agent: str | None = None,
    llm_url: str | None = None,
    policy: str | None = None,
    profile_overrides: dict[str, Any] | None = None,
    data_root: Path | None = None,
    seed: int = 0,
    prompts: str | None = None,
    early_stop: str | None = None,
) -> tuple[RunDir, bool]:
    """(run, created). Flags that contradict an existing run's frozen config are an error."""
    runs_dir = Path(runs_dir)
    if tag and (runs_dir / tag / paths.STATE_DIR / "config.json").exists():
        run = RunDir((runs_dir / tag).resolve())
        cfg = run.config()
        frozen = {"dataset": cfg.get("dataset"), "backend": cfg.get("backend"), "budget": cfg["profile"]["time_budget"],
                  "policy": cfg.get("policy")}
        asked = {"dataset": dataset, "backend": backend, "budget": budget, "policy": policy}
        clash = [f"--{k} {v} (the run has {frozen[k]})" for k, v in asked.items() if v is not None and v != frozen[k]]
        if clash:
            raise RunError(f"run {tag} was created with other settings: {'; '.join(clash)}. Start a new run with "
                           "another --tag to change them.")
        return run, False
    tag = tag or default_tag(runs_dir)
    overrides = with_flags(profile_overrides, dataset=dataset, backend=backend, time_budget=budget)
    plan = plan_training(overrides, data_root, seed)
    hw, profile, prepared = plan.hardware, plan.profile, plan.prepared
    config = {
        "profile": profile.to_dict(),
        "backend": profile.backend,
        "dataset": profile.dataset,
        "data_dir": str(prepared.directory.resolve()),
        "manifest_digest": prepared.manifest.digest,
        "hardware": hw.to_dict(),
        "hardware_summary": hardware_summary(hw),
        "policy": policy or "noise",
        "agent": agent,
        "llm_url": llm_url,
        "prompts": prompts,  # an edited prompts directory (None: the shipped prompts)
        "early_stop": early_stop or "safe",  # off | safe | aggressive (a session's --early-stop overrides it)
        "seed": seed,
        "deadline_seconds": deadline_for(profile),
    }
    run = RunDir.create(runs_dir / tag, plan.source, config, dataclasses.asdict(plan.harness))
    return run, True
