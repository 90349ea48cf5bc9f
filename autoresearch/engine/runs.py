"""The runs in a runs directory, summarised for a picker (running ones first, then the most recent)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..paths import STATE_DIR
from .rundir import RunDir
from .view import RunView


@dataclass(frozen=True)
class RunSummary:
    tag: str
    path: Path
    status: str  # running | paused | stopped | unreadable
    phase: str
    experiments: int
    best_val_bpb: float | None
    gain: float | None  # best - baseline (negative = better)
    last_activity: float | None  # seconds since the epoch
    dataset: str | None
    agent: str | None
    error: str | None = None


def summarize(path: Path, view: RunView | None = None) -> RunSummary:
    """One run's summary (``view``: a view kept from an earlier call, polled incrementally)."""
    view = view or RunView(RunDir(path))
    st = view.poll().state
    events = path / STATE_DIR / "events.jsonl"
    try:
        mtime = (events if events.exists() else path / STATE_DIR / "config.json").stat().st_mtime
    except OSError:
        mtime = None
    return RunSummary(
        tag=st.tag, path=st.path, status="unreadable" if st.error else st.status, phase=st.phase,
        experiments=st.experiments, best_val_bpb=st.best.val_bpb if st.best else None, gain=st.gain,
        last_activity=st.engine.last_seen or mtime, dataset=st.config.get("dataset"), agent=st.config.get("agent"),
        error=st.error,
    )


def list_runs(runs_dir: Path, views: dict[Path, RunView] | None = None) -> list[RunSummary]:
    """Every run directory in ``runs_dir``: running and paused first, then by last activity, newest first.

    ``views``: a cache the caller keeps between calls (one view per run, polled incrementally), so listing
    again reads only what the runs appended since.
    """
    if not runs_dir.is_dir():
        return []
    paths = [p.resolve() for p in runs_dir.iterdir() if (p / STATE_DIR / "config.json").exists()]
    if views is not None:
        for gone in set(views) - set(paths):
            del views[gone]
        for p in paths:
            views.setdefault(p, RunView(RunDir(p)))
    runs = [summarize(p, views[p] if views is not None else None) for p in paths]
    return sorted(runs, key=lambda r: (r.status not in ("running", "paused"), -(r.last_activity or 0.0), r.tag))
