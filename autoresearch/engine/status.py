"""`autoresearch status`: a run's state and results table, from the read model (read-only, any process), or
from a results.tsv alone (upstream autoresearch's, or one of ours copied away from its run)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from .earlystop import stopped_at
from .results import read_results_tsv
from .rundir import RunDir, RunError
from .stall import stall_words
from .view import RunView, experiment_status


def run_status(run: RunDir) -> dict[str, Any]:
    view = RunView(run)
    st = view.poll().state
    if st.error:
        raise RunError(st.error)
    cfg = st.config
    experiments = []
    for e in view.experiments():
        experiments.append({
            "index": e.index,
            "commit": (e.commit or "")[:7],
            "status": experiment_status(e, st),
            "val_bpb": e.val_bpb,
            "delta": e.delta,
            "description": e.description,
            "training_seconds": e.training_seconds,
            "memory_gb": e.memory_gb,
            "seeds": len(e.trainings),
            "test_bpb": e.test_bpb,
            "reason": e.reason,
        })
    agent: dict[str, Any] = {"spec": st.agent.spec, "unusable_replies": st.agent.unusable_replies}
    if st.engine.alive and st.agent.state is not None:
        agent.update(state=st.agent.state, message=st.agent.message, since=st.agent.since)
    best = st.best
    stall = None
    if st.engine.alive and st.stalled_since is not None:
        stall = {"seconds": round(time.time() - st.stalled_since), "doing": st.stall_doing, "pid": st.engine.pid}
    return {
        "run": run.tag,
        "path": str(run.path),
        "state": st.status,
        "phase": st.phase,
        "profile": cfg.get("profile", {}).get("name"),
        "backend": cfg.get("backend"),
        "dataset": cfg.get("dataset"),
        "policy": cfg.get("policy"),
        "best": {"index": best.index, "val_bpb": best.val_bpb, "commit": (best.commit or "")[:7]} if best else None,
        "baseline_val_bpb": st.baseline.val_bpb if st.baseline else None,
        "noise_sigma": st.noise_sigma,
        "counts": st.counts,
        "agent": agent,
        "stall": stall,
        "experiments": experiments,
    }


def tsv_status(path: Path) -> dict[str, Any]:
    """The same report from a results.tsv alone: upstream autoresearch's (5 columns) or one of ours without its
    run directory. Deltas the file does not carry are against the best before each row (upstream's rule)."""
    rows = read_results_tsv(path)
    if not rows:
        raise RunError(f"{path} has no results (an empty file, or not a results.tsv)")
    experiments, counts = [], Counter(r.status or "?" for r in rows)
    best_row = None
    for r in rows:
        delta = r.delta
        if delta is None and r.val_bpb is not None and best_row is not None and r.status in ("keep", "discard"):
            delta = r.val_bpb - best_row.val_bpb
        experiments.append({"index": r.index, "commit": r.commit[:7], "status": r.status, "val_bpb": r.val_bpb,
                            "delta": delta, "description": r.description, "training_seconds": r.training_seconds,
                            "memory_gb": r.memory_gb, "seeds": r.seeds, "test_bpb": r.test_bpb, "reason": ""})
        if r.status == "keep" and r.val_bpb is not None:
            best_row = r
    baseline = rows[0].val_bpb if rows[0].status == "keep" else None
    return {
        "run": path.parent.name if path.name == "results.tsv" else path.stem, "path": str(path),
        "state": "recorded", "phase": None, "source": "results.tsv", "profile": None, "backend": None,
        "dataset": None, "policy": None,
        "best": {"index": best_row.index, "val_bpb": best_row.val_bpb, "commit": best_row.commit[:7]} if best_row else None,
        "baseline_val_bpb": baseline, "noise_sigma": None, "counts": dict(counts), "agent": {},
        "experiments": experiments,
    }


def _num(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "-"


def _short(text: str, width: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _value(x: dict[str, Any]) -> str:
    """The val_bpb cell: the figure, or where a discard without one was stopped early ('stop 35%')."""
    share = stopped_at(x.get("reason") or "") if x["val_bpb"] is None and x["status"] == "discard" else None
    return f"stop {share}" if share else _num(x["val_bpb"], ".6f")


def format_status(r: dict[str, Any]) -> str:
    lines = [f"run {r['run']} ({r['state']}) — {r['path']}"]
    if r.get("source") == "results.tsv":
        lines.append("read from a results.tsv alone (no run directory: no noise estimate, no agent, no diffs)")
    else:
        lines.append(f"profile {r['profile']}, {r['backend']}, data {r['dataset']}, policy {r['policy']}")
    best, base = r["best"], r["baseline_val_bpb"]
    if best:
        gain = f", {best['val_bpb'] - base:+.6f} vs baseline" if base is not None and best["val_bpb"] is not None else ""
        lines.append(f"best val_bpb {_num(best['val_bpb'], '.6f')} (experiment {best['index']}, {best['commit']}){gain}")
    if r["noise_sigma"] is not None:
        lines.append(f"noise (seed-to-seed std) {r['noise_sigma']:.6f}")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items())) or "no experiments yet")
    stall = r.get("stall")
    if stall:
        lines.append("STALLED: " + stall_words(stall["seconds"], stall["doing"], r["run"], stall.get("pid")))
    agent = r.get("agent") or {}
    if agent.get("spec"):
        text = f"agent {agent['spec']}"
        if agent.get("unusable_replies"):
            text += f", {agent['unusable_replies']} unusable repl{'y' if agent['unusable_replies'] == 1 else 'ies'} so far"
        if agent.get("state") == "unavailable":
            text += f"; UNREACHABLE since {str(agent.get('since'))[:19]}: {_short(agent.get('message') or '', 100)} (waiting; no experiment is spent)"
        elif agent.get("state") == "retrying":
            text += f"; last reply unusable: {_short(agent.get('message') or '', 100)}"
        lines.append(text)
    lines.append("")
    lines.append(f"{'#':>4}  {'commit':<7}  {'status':<11}  {'val_bpb':>9}  {'delta':>9}  {'mem GB':>6}  {'train s':>7}  description")
    for x in r["experiments"]:
        lines.append(
            f"{x['index']:>4}  {x['commit']:<7}  {x['status']:<11}  {_value(x):>9}  "
            f"{_num(x['delta'], '+.6f'):>9}  {_num(x['memory_gb'], '.1f'):>6}  {_num(x['training_seconds'], '.1f'):>7}  "
            f"{_short(x['description'])}"
        )
    return "\n".join(lines)
