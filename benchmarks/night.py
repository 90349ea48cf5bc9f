"""What a night is spent on (issue 15): training, evaluation, the agent, start-up, idle; experiments per hour.

    python benchmarks/night.py                 # a simulated night from recorded times, one line per variant
    python benchmarks/night.py RUN_DIR         # the same split for a real run (what `autoresearch report` shows)
    python benchmarks/night.py --agent-seconds 8   # the simulation with a remote LLM's reply time instead

The simulation replays what was recorded on this machine: the trainings of benchmarks/curves/*.jsonl (their
training seconds, their wall time, their scoring time and their loss curves) and the local LLM's reply times
of benchmarks/replies/gemma3-270m.jsonl. Each recorded experiment is proposed, trained and scored in turn:

- plain: propose, then start, train and score (one after the other);
- early stop: a training the judge stops (benchmarks/early_stop.py's replay, safe mode) ends there and is not
  scored;
- pipelined: the next proposal is written while the current experiment trains; the agent is waited for only
  for what it takes beyond that, and in full after a keep (the prepared proposal re-asked, the worst case);
- both.

Lines read `night[VARIANT]: training T%, evaluation E%, agent A%, start-up/compile C%, idle I%, experiments/hour X`.
(Pipelining is simulated here; the engine proposes while training only once issue 15's second part lands.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from early_stop import load, reference  # noqa: E402
from autoresearch.engine.earlystop import Judge, clean_curve, mode_for  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = ("plain", "early stop", "pipelined", "both")


def line(name: str, parts: dict[str, float], experiments: int) -> str:
    total = sum(parts.values())
    share = {k: 100.0 * v / total if total else 0.0 for k, v in parts.items()}
    rate = experiments / (total / 3600) if total else 0.0
    return (f"night[{name}]: training {share['training']:.0f}%, evaluation {share['evaluation']:.0f}%, agent "
            f"{share['agent']:.0f}%, start-up/compile {share['startup']:.0f}%, idle {share['idle']:.0f}%, "
            f"experiments/hour {rate:.1f}")


def simulate(rows: list[dict], agent_seconds: list[float], variant: str) -> tuple[dict[str, float], int]:
    baseline = [r for r in rows if r["label"] == "template" and r["status"] == "ok"]
    experiments = [r for r in rows if r["label"] != "template"]
    sigma = statistics.stdev(r["val_bpb"] for r in rows if r["label"].startswith("template") and r["status"] == "ok")
    refs = [reference(r, True) for r in baseline]
    best = statistics.mean(r["val_bpb"] for r in baseline)
    best_ref = None
    early = variant in ("early stop", "both")
    pipelined = variant in ("pipelined", "both")
    parts = {"training": 0.0, "evaluation": 0.0, "agent": 0.0, "startup": 0.0, "idle": 0.0}
    previous_busy = 0.0  # the last experiment's start-up + training + evaluation: the agent's head start
    previous_kept = True  # the first proposal is written before anything trains
    scoring_default = statistics.median(r["scoring_seconds"] for r in rows if r.get("scoring_seconds"))
    for i, r in enumerate(experiments):
        agent = agent_seconds[i % len(agent_seconds)]
        training = float(r.get("training_seconds") or 0.0)
        scoring = float(r.get("scoring_seconds") or scoring_default) if r["status"] == "ok" else 0.0
        startup = max(0.0, float(r.get("total_seconds") or 0.0) - training - scoring)
        stop = None
        if early:
            judge = Judge(mode_for("safe"), refs + ([best_ref] if best_ref else []), best_bpb=best, schedule=r["schedule"],
                          sigma=sigma)
            stop = judge.replay(clean_curve(r.get("loss_curve")))
        if stop is not None:
            training *= stop.progress
            scoring = 0.0
        waited = agent if (not pipelined or previous_kept) else max(0.0, agent - previous_busy)
        parts["agent"] += waited
        parts["training"] += training
        parts["evaluation"] += scoring
        parts["startup"] += startup
        val = r.get("val_bpb") if r["status"] == "ok" else None
        kept = stop is None and val is not None and val < best - sigma
        if kept:
            best, best_ref = val, reference(r, False)
        previous_busy, previous_kept = startup + training + scoring, kept
    return parts, len(experiments)


def real_run(path: Path) -> None:
    from autoresearch.engine.report import build_report
    from autoresearch.engine.rundir import RunDir

    report = build_report(RunDir(path.resolve()))
    t = report.timing
    names = ["training", "evaluation", "agent", "startup", "idle"]
    parts = {name: p.seconds for name, p in zip(names, t.parts)}
    decided = len(report.decided) if hasattr(report, "decided") else 0
    print(line(report.name, parts, decided))
    for note in t.notes:
        print(f"  note: {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", type=Path, help="a run directory: its real split instead of a simulation")
    ap.add_argument("--curves", type=Path, nargs="+", default=sorted((HERE / "curves").glob("*.jsonl")))
    ap.add_argument("--replies", type=Path, default=HERE / "replies" / "gemma3-270m.jsonl")
    ap.add_argument("--agent-seconds", type=float, help="every proposal takes this long (e.g. a remote API's reply time)")
    args = ap.parse_args()
    if args.run is not None:
        real_run(args.run)
        return
    rows = load(args.curves)
    if args.agent_seconds is not None:
        agent = [args.agent_seconds]
        source = f"{args.agent_seconds:.0f} s per proposal (given)"
    else:
        agent = [float(json.loads(x)["seconds"]) for x in args.replies.read_text().splitlines() if x.strip()]
        source = f"{len(agent)} recorded replies of {args.replies.stem} (median {statistics.median(agent):.0f} s)"
    print(f"simulated night: {sum(r['label'] != 'template' for r in rows)} recorded trainings, agent: {source}")
    for variant in VARIANTS:
        parts, n = simulate(rows, agent, variant)
        print(line(variant, parts, n))


if __name__ == "__main__":
    main()
