"""Tokens/s and val_bpb of train_torch.py and train_mlx.py at the CPU profile, after a fixed budget.

    python benchmarks/train_cpu.py [--budget 30] [--seeds 0 1 2] [--backends torch mlx]
                                   [--set KNOB=VALUE ...] [--script PATH --label NAME] [--save FILE]

--set rewrites knobs of the rendered template (a variant to compare); --script trains another file instead
of the template (a reference kept outside the repo, see train_cpu.md), rendered the same way when it has the
template's knob names and trained as is otherwise. --save appends one JSON line per training (the label, the
seed, the outcome, val_bpb, the loss curve, the schedule signature): the curves benchmarks/early_stop.py replays.

Prepares the full `stdlib` corpus at vocab 2048 if needed (a few seconds), then trains each template,
rendered with the CPU profile's knobs, through the real runner, once per seed. Prints one row per run and
the mean per backend, next to the unigram baseline of the same data. Reference (issue 3): a plain 4-layer,
128-wide AdamW GPT reached 2.39-2.53 after 30 s on 2 cores; target for train_torch.py: 2.30 or better.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoresearch.backends import BACKENDS, harness_config  # noqa: E402
from autoresearch.backends.knobs import render_for_profile, set_knobs  # noqa: E402
from autoresearch.engine.earlystop import schedule_signature  # noqa: E402
from autoresearch.training.trial import run_script  # noqa: E402
from autoresearch.hardware import Hardware, detect, profile_for  # noqa: E402
from autoresearch.harness.prepare import prepare  # noqa: E402
from autoresearch.progress import TqdmProgress  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--backends", nargs="+", default=["torch", "mlx"])
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="a knob's value (Python literal)")
    ap.add_argument("--script", type=Path, help="train this file instead of the backend's template")
    ap.add_argument("--label", help="the name printed for this variant (default: the backend, the script, the knobs)")
    ap.add_argument("--save", type=Path, help="append each training's curve and result to this JSON-lines file")
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[name.strip()] = value.strip()  # a bare string such as SSSL

    here = detect()
    cpu_only = Hardware(here.system, "x86_64", here.cpu_model, here.cpu_cores, here.cpu_threads, here.ram_gb,
                        mlx_available=here.mlx_available)
    data = prepare("stdlib", 2048, progress=TqdmProgress())
    unigram = data.manifest.stats["unigram_bpb"]
    print(f"machine: {here.cpu_model}, {here.cpu_threads} threads; data stdlib v2048 (unigram {unigram:.3f} bits/byte)")
    print(f"{'backend':<8}{'seed':>5}{'status':>9}{'val_bpb':>10}{'tok/s':>10}{'steps':>7}{'train s':>9}{'total s':>9}")
    results: dict[str, list[tuple[float, float]]] = {}
    for name in args.backends:
        if importlib.util.find_spec(BACKENDS[name].module) is None:
            print(f"{name:<8} not installed, skipped")
            continue
        profile = profile_for(cpu_only, {"backend": name, "time_budget": args.budget, "dataset": "stdlib"})
        # the profile's knobs where the script has them (a script without them is trained as is), then the variant's
        source = set_knobs(render_for_profile((args.script or BACKENDS[name].template()).read_text(), profile), overrides)
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_script(source, harness_config(profile, data.directory, data.manifest, seed=seed), Path(tmp),
                               deadline_seconds=args.budget * 3 + 300)
            m = dict(r.metrics, total_seconds=r.wall_seconds)
            bpb = m.get("val_bpb")
            print(f"{name:<8}{seed:>5}{r.status:>9}{bpb if bpb is not None else float('nan'):>10.4f}"
                  f"{m.get('tokens_per_second', 0):>10,.0f}{m.get('num_steps', 0):>7}"
                  f"{m.get('training_seconds', 0):>9.1f}{m.get('total_seconds', 0):>9.1f}", flush=True)
            if args.save:
                _save(args.save, label=args.label or " ".join([name] + args.set), backend=name, seed=seed, budget=args.budget,
                      knobs=overrides, status=r.status, val_bpb=bpb, loss_curve=m.get("loss_curve", []),
                      training_seconds=m.get("training_seconds"), total_seconds=round(r.wall_seconds, 1),
                      tokens_per_second=m.get("tokens_per_second"), scoring_seconds=m.get("scoring_seconds"),
                      schedule=schedule_signature(source))
            if r.status == "ok":
                results.setdefault(name, []).append((bpb, m["tokens_per_second"]))
            else:
                print(r.tail)
    print()
    for name, rows in results.items():
        bpbs = [b for b, _ in rows]
        spread = (f" (sd {statistics.stdev(bpbs):.4f}, min {min(bpbs):.4f}, max {max(bpbs):.4f})"
                  if len(bpbs) > 1 else "")
        label = args.label or " ".join([name] + ([args.script.name] if args.script else []) + args.set)
        print(f"{label}: mean val_bpb {statistics.mean(bpbs):.4f}{spread}, seeds {' '.join(map(str, args.seeds))}, "
              f"{statistics.mean(t for _, t in rows):,.0f} tok/s, {args.budget:.0f} s budget; unigram {unigram:.3f}")


def _save(path: Path, **row: object) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
