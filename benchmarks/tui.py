"""The app's two targets, measured on the real app: opening a run of 10,000 experiments, and following a log.

1. Open: a run directory with 10,000 experiments (~40,000 events, the same synthetic night as
   benchmarks/ledger.py, written through the real Ledger) is opened in the real app (``ResearchApp`` on its
   dashboard, headless ``run_test`` at 200x50): the time from starting the app until the history table holds
   all rows and has painted them (the poller thread's first read of the ledger, the reduction, the rows
   handed over in a message, the table's load and first frame). Target: < 1 s.
2. Follow: benchmarks/tui_log.py (the log pane following a file that another process grows to 1,000,000
   lines): the app's peak RSS. Target: < 100 MB.

Never measure while something else trains (2 cores: a second training slowed one 17x here).

    python benchmarks/tui.py [--experiments 10000] [--repeat 3] [--skip-log]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ledger import _events  # noqa: E402  (benchmarks/ledger.py: the synthetic night)

from autoresearch.resources import template_path  # noqa: E402
from autoresearch.engine.ledger import Ledger  # noqa: E402
from autoresearch.engine.rundir import RunDir  # noqa: E402

OPEN_TARGET_S = 1.0


def make_run(base: Path, experiments: int) -> RunDir:
    config = {"backend": "torch", "dataset": "climbmix", "policy": "noise", "seed": 0, "deadline_seconds": 420,
              "agent": "ollama:qwen3:8b", "profile": {"name": "datacenter-cuda", "time_budget": 300, "device": "cuda"}}
    run = RunDir.create(base / "runs" / "long", template_path("torch").read_text(), config, {})
    ledger = Ledger(run.path)
    ledger.append_many(_events(experiments, random.Random(0)))
    ledger.write_results_tsv()
    return run


async def open_once(run: RunDir, experiments: int) -> tuple[float, float]:
    from autoresearch.tui.app import ResearchApp
    from autoresearch.tui.screens.dashboard import Dashboard
    from autoresearch.tui.widgets.history import HistoryTable

    painted: dict[str, float] = {}
    original = HistoryTable.render_line

    def spy(self: HistoryTable, y: int):  # type: ignore[no-untyped-def]
        if self.row_count >= experiments and "t" not in painted:
            painted["t"] = time.perf_counter()
        return original(self, y)

    HistoryTable.render_line = spy  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        app = ResearchApp(run.path.parent, run.path, load_sampler=lambda: None)
        async with app.run_test(size=(200, 50)) as pilot:
            while "t" not in painted and time.perf_counter() - t0 < 60:
                await pilot.pause(0.01)
            screen = app.screen
            assert isinstance(screen, Dashboard)
            while (screen.state is None or screen.state.experiments < experiments) and time.perf_counter() - t0 < 60:
                await pilot.pause(0.01)
            full = time.perf_counter()
        return painted.get("t", float("nan")) - t0, full - t0
    finally:
        HistoryTable.render_line = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-log", action="store_true", help="only the open figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = make_run(Path(tmp), args.experiments)
        events = len(Ledger(run.path, writable=False))
        print(f"made a run of {args.experiments:,} experiments ({events:,} events) in {time.perf_counter() - t:.1f}s")
        firsts, fulls = [], []
        for _ in range(args.repeat):
            first, full = asyncio.run(open_once(run, args.experiments))
            firsts.append(first)
            fulls.append(full)
        med = statistics.median(firsts)
        print(f"tui open: {args.experiments:,} experiments, table painted {med:.2f} s after the app started "
              f"(median of {len(firsts)}: {', '.join(f'{x:.2f}' for x in firsts)}; from results.tsv), the whole "
              f"ledger read and shown {statistics.median(fulls):.2f} s; target < {OPEN_TARGET_S:.0f} s: "
              f"{'MET' if med < OPEN_TARGET_S else 'NOT MET'}")
    if not args.skip_log:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tui_log.py")], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip())


if __name__ == "__main__":
    main()
