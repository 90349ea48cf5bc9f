"""`autoresearch status`: a run's state and results table, from the read model (read-only, any process)."""

from __future__ import annotations

from typing import Any

from .rundir import RunDir, RunError
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
        "experiments": experiments,
    }


def _num(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "-"


def _short(text: str, width: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_status(r: dict[str, Any]) -> str:
    lines = [f"run {r['run']} ({r['state']}) — {r['path']}",
             f"profile {r['profile']}, {r['backend']}, data {r['dataset']}, policy {r['policy']}"]
    best, base = r["best"], r["baseline_val_bpb"]
    if best:
        gain = f", {best['val_bpb'] - base:+.6f} vs baseline" if base is not None and best["val_bpb"] is not None else ""
        lines.append(f"best val_bpb {_num(best['val_bpb'], '.6f')} (experiment {best['index']}, {best['commit']}){gain}")
    if r["noise_sigma"] is not None:
        lines.append(f"noise (seed-to-seed std) {r['noise_sigma']:.6f}")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items())) or "no experiments yet")
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
            f"{x['index']:>4}  {x['commit']:<7}  {x['status']:<11}  {_num(x['val_bpb'], '.6f'):>9}  "
            f"{_num(x['delta'], '+.6f'):>9}  {_num(x['memory_gb'], '.1f'):>6}  {_num(x['training_seconds'], '.1f'):>7}  "
            f"{_short(x['description'])}"
        )
    return "\n".join(lines)
