"""Calibrate early stopping (issue 15): replay recorded training curves through the judge.

    python benchmarks/early_stop.py [--curves FILE ...] [--mode safe|aggressive] [--orders 50]

The curves (one JSON line per training: label, seed, status, val_bpb, loss_curve, schedule; written by
`benchmarks/train_cpu.py --save`) are real trainings of this machine, committed in benchmarks/curves/. The
trainings labelled ``template`` are the baseline's seeds (the judge's trusted references); every other one is
an experiment of a replayed night, in the recorded order and then in ``--orders`` shuffled orders.

A night's replay: the best starts as the baseline's mean; each experiment is judged point by point as if it
were training; an experiment that ends (its real val_bpb) below the best by more than the noise (the sd of
all template seeds' val_bpb) is kept, becomes the best and a reference. Wrongly stopped: a kept experiment
the judge stopped; near-best: an experiment that ended within one sigma of the best of its time.

The last line reads
`early stop: stopped N of M runs (P%), saved S% of training time, wrongly stopped kept: K, wrongly stopped near-best: Q%`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoresearch.engine.earlystop import Judge, Reference, clean_curve, mode_for  # noqa: E402

HERE = Path(__file__).resolve().parent


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def reference(row: dict, trusted: bool) -> Reference:
    return Reference(curve=tuple(clean_curve(row["loss_curve"])), val_bpb=float(row["val_bpb"]), schedule=row["schedule"],
                     trusted=trusted, label=f"{row['label']} seed {row['seed']}")


def night(baseline: list[dict], experiments: list[dict], mode_name: str, sigma: float) -> dict:
    """One replayed night: counts and the stopped experiments."""
    mode = mode_for(mode_name)
    refs = [reference(r, True) for r in baseline]
    best = statistics.mean(r["val_bpb"] for r in baseline)
    best_ref: Reference | None = None
    out = {"runs": 0, "stopped": 0, "time": 0.0, "saved": 0.0, "kept": 0, "wrong_kept": 0, "near": 0, "wrong_near": 0,
           "stops": []}
    for row in experiments:
        curve = clean_curve(row.get("loss_curve"))
        seconds = float(row.get("training_seconds") or 0.0)
        out["runs"] += 1
        out["time"] += seconds
        judge = Judge(mode, refs + ([best_ref] if best_ref else []), best_bpb=best, schedule=row["schedule"], sigma=sigma)
        stop = judge.replay(curve)
        val = row.get("val_bpb") if row.get("status") == "ok" else None
        kept = val is not None and val < best - sigma
        near = val is not None and val <= best + sigma
        out["kept"] += kept
        out["near"] += near
        if stop is not None:
            out["stopped"] += 1
            out["saved"] += seconds * (1.0 - stop.progress)
            out["wrong_kept"] += kept
            out["wrong_near"] += near
            out["stops"].append((row["label"], row["seed"], val, stop))
        if kept and stop is None:
            best, best_ref = val, reference(row, False)
    return out


def line(r: dict) -> str:
    pct = 100.0 * r["stopped"] / r["runs"] if r["runs"] else 0.0
    saved = 100.0 * r["saved"] / r["time"] if r["time"] else 0.0
    near = 100.0 * r["wrong_near"] / r["near"] if r["near"] else 0.0
    return (f"stopped {r['stopped']} of {r['runs']} runs ({pct:.0f}%), saved {saved:.0f}% of training time, "
            f"wrongly stopped kept: {r['wrong_kept']}, wrongly stopped near-best: {near:.0f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curves", type=Path, nargs="+", default=sorted((HERE / "curves").glob("*.jsonl")))
    ap.add_argument("--mode", default="safe", choices=["safe", "aggressive"])
    ap.add_argument("--orders", type=int, default=50, help="shuffled orders replayed besides the recorded one")
    args = ap.parse_args()
    rows = load(args.curves)
    baseline = [r for r in rows if r["label"] == "template" and r["status"] == "ok"]
    experiments = [r for r in rows if r["label"] != "template"]
    if len(baseline) < 2 or not experiments:
        sys.exit("need at least two trainings labelled 'template' (the baseline's seeds) and some others")
    template_vals = [r["val_bpb"] for r in rows if r["label"].startswith("template") and r["status"] == "ok"]
    sigma = statistics.stdev(template_vals)
    print(f"{len(rows)} recorded trainings from {', '.join(p.name for p in args.curves)}: {len(baseline)} baseline seeds "
          f"(val_bpb {statistics.mean(r['val_bpb'] for r in baseline):.4f}), {len(experiments)} experiments; "
          f"noise sigma {sigma:.4f} (sd of {len(template_vals)} template seeds)")
    for mode in ("aggressive", "safe"):
        r = night(baseline, experiments, mode, sigma)
        for label, seed, val, stop in r["stops"]:
            print(f"  [{mode}] {label} seed {seed}: {stop.reason}; it ended at "
                  + (f"{val:.4f}" if val is not None else "no score"))
        rng = random.Random(0)
        totals = {k: 0 for k in ("runs", "stopped", "time", "saved", "kept", "wrong_kept", "near", "wrong_near")}
        worst_kept = 0
        for _ in range(args.orders):
            order = experiments[:]
            rng.shuffle(order)
            s = night(baseline, order, mode, sigma)
            worst_kept = max(worst_kept, s["wrong_kept"])
            for k in totals:
                totals[k] += s[k]  # type: ignore[operator]
        print(f"early stop [{mode}], recorded order: {line(r)}")
        if args.orders:
            print(f"early stop [{mode}], {args.orders} shuffled orders together: {line(totals)} "
                  f"(at most {worst_kept} wrongly stopped kept in one order)")
    final = night(baseline, experiments, args.mode, sigma)
    print(f"early stop: {line(final)}")


if __name__ == "__main__":
    main()
