"""`autoresearch demo`: the first evening in a few minutes, on any machine, with no download and no GPU.

A complete short research run on the built-in ``stdlib`` corpus (the Python standard library's own source): the
data prepared if it is not yet, a run created with the best researcher available (agent/choice.py), its baseline
trained with two seeds for the noise estimate, experiments decided keep or discard until the time is up, then
the results table and the report with its plot. The engine is the same one a night uses; only the budget per
experiment is short and the session has a time limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import config as config_mod

DATASET = "stdlib"
MINUTES = 4.0  # the session's limit: with the data already there the whole demo stays under about 5 minutes
BUDGET = 10.0  # training seconds per experiment (a night's is the profile's: 300 s on most machines)


@dataclass
class DemoPlan:
    runs_dir: Path
    tag: str
    agent: str
    reason: str  # why this researcher
    budget: float
    minutes: float


def plan(settings: config_mod.Settings, *, runs_dir: Path | None, agent: str | None, budget: float | None,
         minutes: float | None, say: Callable[[str], None]) -> DemoPlan:
    """Prepare the data if needed and decide the researcher; nothing is created yet."""
    from .agent.choice import BASELINE, choose, memory_for_llm
    from .engine.create import default_tag
    from .hardware import detect, profile_for, with_flags
    from .harness.prepare import prepare
    from .progress import TqdmProgress

    hw = detect()
    overrides = with_flags(settings.profile_overrides, dataset=DATASET)
    profile = profile_for(hw, overrides)
    started = time.monotonic()
    prepared = prepare(DATASET, profile.vocab_size, root=settings.data_dir, progress=TqdmProgress())
    if time.monotonic() - started > 1:
        say(f"prepared the stdlib corpus (vocab {profile.vocab_size}) in {time.monotonic() - started:.0f} s: "
            f"{prepared.manifest.split_tokens('train'):,} training tokens")
    if agent:
        spec, reason = agent, "named with --agent"
    else:
        choice = choose(settings.agent.get("default"), settings.ollama_host, memory_for_llm(hw))
        spec, reason = (choice.spec, choice.reason) if choice.spec else ("search", "the search agent (no LLM)")
    if spec == BASELINE:
        spec, reason = "search", "the search agent (the demo researches; --agent baseline is for `run`)"
    runs = Path(runs_dir or settings.runs_dir)
    return DemoPlan(runs, default_tag(runs, prefix="demo-"), spec, reason, budget or BUDGET,
                    minutes or MINUTES)


def create(p: DemoPlan, settings: config_mod.Settings):  # type: ignore[no-untyped-def]
    from .engine.create import open_or_create

    run, _ = open_or_create(p.runs_dir, p.tag, dataset=DATASET, budget=p.budget, agent=p.agent,
                            profile_overrides=settings.profile_overrides, data_root=settings.data_dir)
    return run


def intro(p: DemoPlan) -> list[str]:
    return [
        f"autoresearch demo: a short research run on the built-in stdlib corpus, {p.budget:.0f} s of training per "
        f"experiment, about {p.minutes:.0f} minutes in all (a real night uses the machine's profile: "
        "`autoresearch run`)",
        f"researcher: {p.reason}",
    ]


def outro(run, report_paths: tuple[Path, Path] | None) -> list[str]:  # type: ignore[no-untyped-def]
    lines = [f"the run is in {run.path} (a git repository: `git -C {run.path} log --oneline`)"]
    if report_paths:
        md, png = report_paths
        lines += [f"report: {md}", f"plot:   {png}"]
    lines += [f"next: `autoresearch review {run.tag}` for the kept changes, `autoresearch report {run.tag}` again "
              "after more experiments, `autoresearch run` for a night on this machine's profile"]
    return lines
