"""`autoresearch status`: a run's state and results table, from its ledger (read-only, any process)."""

from __future__ import annotations

from typing import Any

from .ledger import Ledger
from .rundir import RunDir, RunLock


def run_status(run: RunDir) -> dict[str, Any]:
    ledger = Ledger(run.path, writable=False)
    events = ledger.events()
    exps = ledger.experiments()
    best = ledger.best()
    cfg = run.config()
    noise = next((e for e in reversed(events) if e.get("event") == "noise_estimate"), None)
    last_state = next((e for e in reversed(events) if e.get("event") in ("paused", "resumed", "stopped", "run_started")), None)
    running = RunLock(run).is_held()
    if not running:
        state = "stopped"
    elif last_state is not None and last_state.get("event") == "paused":
        state = "paused"
    else:
        state = "running"
    experiments = []
    for e in exps:
        experiments.append({
            "index": e.index,
            "commit": (e.commit or "")[:7],
            "status": e.status or "running",
            "val_bpb": e.val_bpb,
            "delta": e.delta,
            "description": e.description,
            "training_seconds": e.training_seconds,
            "memory_gb": e.memory_gb,
            "seeds": len(e.runs),
            "test_bpb": e.test_bpb,
            "reason": e.reason,
        })
    agent: dict[str, Any] = {"spec": cfg.get("agent"),
                             "unusable_replies": sum(1 for e in events if e.get("event") == "agent_error"
                                                     and not e.get("unavailable"))}
    latest, since = None, None  # the agent's state: its latest error, unless a proposal came after it
    for e in reversed(events):
        if e.get("event") in ("experiment_started", "experiment_repaired", "run_started"):
            break
        if e.get("event") == "agent_error":
            if latest is not None and bool(e.get("unavailable")) != bool(latest.get("unavailable")):
                break
            latest = latest or e
            since = e.get("ts")  # the outage began with the first of this unbroken run of errors
    if running and latest is not None:
        agent.update(state="unavailable" if latest.get("unavailable") else "retrying",
                     message=latest.get("message"), since=since)
    counts: dict[str, int] = {}
    for x in experiments:
        counts[x["status"]] = counts.get(x["status"], 0) + 1
    return {
        "run": run.tag,
        "path": str(run.path),
        "state": state,
        "profile": cfg.get("profile", {}).get("name"),
        "backend": cfg.get("backend"),
        "dataset": cfg.get("dataset"),
        "policy": cfg.get("policy"),
        "best": {"index": best.index, "val_bpb": best.val_bpb, "commit": (best.commit or "")[:7]} if best else None,
        "baseline_val_bpb": next((e.val_bpb for e in exps if e.kind == "baseline" and e.status == "keep"), None),
        "noise_sigma": noise.get("sigma") if noise else None,
        "counts": counts,
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
