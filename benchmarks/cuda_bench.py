"""Every CUDA check of train_torch.py in one go (run by benchmarks/cuda_check.sh on a GPU machine).

Trains the template at the upstream configuration (the datacenter-cuda profile: depth 8, width 512, seq
2048, device batch 128, total batch 2^19, vocab 8192, full causal attention) on prepared shards that travel
with the call (no network there), in these variants, each in a fresh process:

    cold     torch.compile with empty inductor/triton caches  (the cost of every new experiment)
    warm     the same code again with the caches from `cold`
    eager    no compile
    changed  after `cold`, with its caches: a typical agent change of the model (MLP_RATIO 4 -> 3): what a real
             experiment pays when only some graphs are new (trainings share a lasting compile cache)
    lr       after `cold`, with its caches: a learning-rate change (the graphs should all come from the cache)
    windows  compiled, sliding windows as upstream's default (SSSL, short window = seq/2): the flex-attention path
    (extra)  any --variant NAME=ENV,ENV... to try a setting, e.g. --variant fullgraph=AR_COMPILE_MODE=...

and prints tokens/s, MFU (H100/H200 bf16 peak), peak memory, and the overhead around the budget
(process wall time minus counted training seconds), next to the upstream figures measured on an H200:
1.71M tokens/s, 48% MFU, 45 GB, 74 s cold / 18 s warm overhead. Full logs go to $OUT when set.

    python benchmarks/cuda_bench.py --data DIR [--budget 90] [--variants cold warm eager]
    python benchmarks/cuda_bench.py --data DIR --cpu-smoke     # the same code path on a CPU, tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoresearch.backends import agent_env, harness_config  # noqa: E402
from autoresearch.training.trial import run_script  # noqa: E402
from autoresearch.backends.knobs import render_for_profile, set_knobs  # noqa: E402
from autoresearch.hardware import CudaDevice, Hardware, profile_for  # noqa: E402
from autoresearch.harness.manifest import read_manifest  # noqa: E402

UPSTREAM = {"tokens_per_second": 1.71e6, "mfu_percent": 48.0, "peak_memory_gb": 45.0, "overhead_cold": 74.0, "overhead_warm": 18.0}


def run_variant(name: str, args: argparse.Namespace, caches: Path, out: Path | None) -> dict:
    data = Path(args.data)
    manifest = read_manifest(data)
    if args.cpu_smoke:
        hw = Hardware("Linux", "x86_64", "cpu", 2, 2, 16.0)
        overrides = {"time_budget": args.budget, "seq_len": 128, "device_batch_size": 4, "total_batch_size": 1024,
                     "vocab_size": manifest.vocab_size, "eval_tokens": 4096, "dataset": manifest.dataset}
    else:
        hw = Hardware("Linux", "x86_64", "host", 16, 16, 128.0, cuda=CudaDevice("NVIDIA H200", 139.8, (9, 0)))
        overrides = {"time_budget": args.budget, "vocab_size": manifest.vocab_size, "dataset": manifest.dataset,
                     "eval_tokens": args.eval_tokens}
    if name == "eager":
        overrides["compile"] = False
    profile = profile_for(hw, overrides)
    work = Path(tempfile.mkdtemp(prefix=f"cuda-{name}-"))
    source = render_for_profile((REPO / "train_torch.py").read_text(), profile)
    knob_changes = {"windows": {"WINDOW_PATTERN": "SSSL", "SHORT_WINDOW": max(1, profile.seq_len // 2)},
                    "changed": {"MLP_RATIO": 3}, "lr": {"MATRIX_LR": 0.03}}
    if name in knob_changes:
        source = set_knobs(source, knob_changes[name])
    env = agent_env()
    env["TORCHINDUCTOR_CACHE_DIR"] = str(caches / "inductor")
    env["TRITON_CACHE_DIR"] = str(caches / "triton")
    for setting in args.extra.get(name, []):
        key, _, value = setting.partition("=")
        env[key] = value
    t0 = time.perf_counter()
    r = run_script(source, harness_config(profile, data, manifest), work, deadline_seconds=args.budget * 3 + 400, env=env)
    wall = time.perf_counter() - t0
    if out:
        (out / f"{name}.log").write_text(r.log_path.read_text() if r.log_path else "")
    m = dict(r.metrics) if r.status == "ok" else {**r.metrics, "status": f"{r.status}: {r.reason}"}
    if r.status != "ok":
        print(r.tail[-3000:])
    m["wall_seconds"] = round(wall, 1)
    m["overhead_seconds"] = round(wall - m.get("training_seconds", 0.0), 1)
    m["variant"] = name
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset directory (stdlib at vocab 8192)")
    ap.add_argument("--budget", type=float, default=90.0)
    ap.add_argument("--eval-tokens", type=int, default=128 * 2048, help="the stdlib val split is small; one eval batch by default")
    ap.add_argument("--variants", nargs="+", default=["cold", "warm", "changed", "lr", "windows", "eager"])
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ENV=VALUE,...", help="an extra variant with env settings")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the same path (no GPU needed)")
    args = ap.parse_args()
    args.extra = {}
    for spec in args.variant:
        name, _, settings = spec.partition("=")
        args.extra[name] = [s for s in settings.split(",") if s]
        args.variants.append(name)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    caches = Path(tempfile.mkdtemp(prefix="compile-cache-"))
    rows = []
    for name in args.variants:
        if name in ("cold", "windows"):  # a cold start; warm/changed/lr reuse what cold compiled
            shutil.rmtree(caches, ignore_errors=True)
            caches.mkdir()
        m = run_variant(name, args, caches, out)
        rows.append(m)
        print(json.dumps(m, sort_keys=True), flush=True)
    if out:
        (out / "results.json").write_text(json.dumps(rows, indent=2))
    print()
    print(f"{'variant':<10}{'status':>8}{'tok/s':>12}{'MFU %':>8}{'peak GB':>9}{'train s':>9}{'wall s':>8}{'overhead s':>11}{'eval s':>8}{'val_bpb':>9}")
    for m in rows:
        print(f"{m['variant']:<10}{str(m.get('status'))[:8]:>8}{m.get('tokens_per_second', 0):>12,.0f}{m.get('mfu_percent', 0):>8.1f}"
              f"{m.get('peak_memory_mb', 0) / 1024:>9.1f}{m.get('training_seconds', 0):>9.1f}{m['wall_seconds']:>8.1f}"
              f"{m['overhead_seconds']:>11.1f}{m.get('eval_seconds', 0):>8.1f}{(m.get('val_bpb') or float('nan')):>9.4f}")
    u = UPSTREAM
    print(f"{'upstream':<10}{'':>8}{u['tokens_per_second']:>12,.0f}{u['mfu_percent']:>8.1f}{u['peak_memory_gb']:>9.1f}"
          f"{'':>9}{'':>8}{'74 / 18':>11}   (cold / warm overhead; target: same tok/s and MFU, <= 25 s cold)")


if __name__ == "__main__":
    main()
