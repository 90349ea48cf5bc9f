"""Engine overhead per experiment (outside the training subprocess and the agent), and `status` on 10,000.

    python benchmarks/engine.py [--experiments 6]

Part 1 runs a real run directory with the scripted test agent and 1-step trainings on a small stdlib
slice, and reads the engine's own timing from each decision event (engine_seconds = experiment wall time
minus agent and training time: git, integrity check, ledger, results.tsv, control). Target: < 1 s.
Part 2 writes a ledger of 10,000 experiments and times `autoresearch status` (a new process, as a user
runs it) and `status --json`. Target: < 1 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from autoresearch.engine.ledger import Ledger  # noqa: E402
from autoresearch.engine.loop import Engine, EngineOptions  # noqa: E402
from autoresearch.engine.rundir import RunDir  # noqa: E402
from autoresearch.harness.prepare import prepare  # noqa: E402
from autoresearch.harness.session import HarnessConfig  # noqa: E402
from scripted_agent import ScriptedAgent  # noqa: E402


def engine_overhead(n: int, tmp: Path) -> list[dict]:
    data = prepare("stdlib", 512, root=tmp / "data", max_bytes=2_000_000)
    harness = HarnessConfig(data_dir=str(data.directory), seq_len=64, vocab_size=data.manifest.vocab_size, time_budget=60,
                            eval_tokens=2**10, device="cpu", max_steps=1, eval_batch_size=16)
    config = {"backend": "torch", "dataset": "stdlib", "policy": "greedy", "seed": 0, "deadline_seconds": 120,
              "manifest_digest": data.manifest.digest, "profile": {"name": "bench", "time_budget": 60}}
    run = RunDir.create(tmp / "run", (REPO / "train_torch.py").read_text(), config, dataclasses.asdict(harness))
    edits = [{"description": f"warmdown experiment {i}", "replace": [["WARMDOWN_FRAC = 0.5", f"WARMDOWN_FRAC = 0.{i + 1}1"]]}
             for i in range(n)]
    agent = ScriptedAgent(edits)
    Engine(run, agent, EngineOptions(max_experiments=n + 1, policy="greedy"), log=lambda s: None).run()
    return [e["timing"] for e in Ledger(run.path).events() if e["event"] == "decision" and "timing" in e]


def status_time(tmp: Path) -> tuple[float, float, float]:
    run = RunDir.create(tmp / "big", "print('x')\n", {"backend": "torch", "policy": "noise", "profile": {"name": "x"}}, {})
    ledger = Ledger(run.path)
    events = []
    for i in range(10_000):
        events.append({"event": "experiment_started", "index": i, "kind": "agent" if i else "baseline", "commit": f"{i:040x}",
                       "parent": None, "description": f"experiment number {i} with a description of typical length"})
        events.append({"event": "training_finished", "index": i, "seed": 0, "outcome": "ok", "val_bpb": 1.0 - i * 1e-6,
                       "metrics": {"training_seconds": 300.0, "peak_memory_mb": 45000.0, "num_steps": 953},
                       "peak_memory_mb": 46000.0, "wall_seconds": 330.0, "log": f"logs/{i:04d}.log", "reason": ""})
        events.append({"event": "decision", "index": i, "status": "keep" if i % 5 == 0 else "discard",
                       "val_bpb": 1.0 - i * 1e-6, "delta": -1e-6, "reason": "bench"})
    t0 = time.perf_counter()
    ledger.append_many(events)
    write = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "autoresearch.cli", "status", str(run.path)]
    times, json_times = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(cmd + ["--json"], capture_output=True, check=True)
        json_times.append(time.perf_counter() - t0)
    return write, statistics.median(times), statistics.median(json_times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        timings = engine_overhead(args.experiments, tmp)
        eng = [t["engine_seconds"] for t in timings]
        print(f"engine overhead per experiment over {len(eng)} experiments: median {statistics.median(eng):.3f}s, "
              f"max {max(eng):.3f}s (target < 1 s) {'MET' if max(eng) < 1 else 'MISSED'}")
        print(f"  (training subprocess median {statistics.median(t['train_seconds'] for t in timings):.2f}s, "
              f"agent median {statistics.median(t['agent_seconds'] for t in timings):.3f}s)")
        write, human, js = status_time(tmp)
        print(f"status on 10,000 experiments (new process, median of 3): {human:.2f}s table, {js:.2f}s --json "
              f"(target < 1 s) {'MET' if max(human, js) < 1 else 'MISSED'}; ledger written in {write:.2f}s")


if __name__ == "__main__":
    main()
