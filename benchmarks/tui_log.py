"""The live log pane on a night-long training log: 1,000,000 lines followed without holding them.

Three measurements, in one headless Textual app process (its RSS sampled by a thread with psutil):

1. follow: a LogView follows an empty file while a separate writer process grows it to --lines
   realistic progress lines (~80 bytes each, now and then an eval line), in batches; the app keeps up
   (view at the last line). Reported: peak RSS during the growth against the app's baseline (app
   started, empty log), and how long after the writer finished the view showed the last line.
2. index: a fresh `LogIndex.refresh()` over the finished file (median of --repeat; file in page cache).
3. first paint: `follow_file()` on the finished file in a fresh view of a fresh app process, until the
   last page is painted; that process's peak RSS against its own baseline.

Target: peak RSS < 100 MB for the app.

    python benchmarks/tui_log.py [--lines 1000000] [--batch 10000] [--repeat 3] [--dir PATH --keep]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.app import App, ComposeResult  # noqa: E402
from textual.pilot import Pilot  # noqa: E402
from textual.strip import Strip  # noqa: E402

from autoresearch.engine.logtail import LogIndex  # noqa: E402
from autoresearch.tui.widgets.logview import LogView  # noqa: E402

TARGET_MB = 100.0
SIZE = (120, 40)

WRITER = r"""
import sys, time
path, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "ab", buffering=0) as f:
    for start in range(0, total, batch):
        out = []
        for i in range(start, min(total, start + batch)):
            if i % 1000 == 999:
                out.append(f"eval  {i:07d} | val_bpb {1.2 - i * 1e-7:.6f} | tokens {i * 8192:,} | took 3.2s\n")
            else:
                pct = 100.0 * i / total
                out.append(f"step {i:07d} | {pct:5.1f}% | loss {3.2 - i * 1e-6:.4f} | lr 6.00e-04 | "
                           f"{12345 + i % 977:,} tok/s | remaining {(total - i) // 1000}s\n")
        f.write("".join(out).encode())
        time.sleep(0.005)
"""


class RssSampler:
    """Samples this process's resident set size in a background thread; keeps the peak."""

    def __init__(self, interval: float = 0.01) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return int(self._proc.memory_info().rss)

    def reset_peak(self) -> None:
        self.peak = self.now()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TimedLogView(LogView):
    """A LogView that notes when it first paints the file's last line with `expect` lines known."""

    def __init__(self, expect: int) -> None:
        super().__init__()
        self.expect = expect
        self.last_page_at: float | None = None

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.last_page_at is None and self.line_count == self.expect and self.scroll_offset.y + y == self.expect - 1:
            self.last_page_at = time.perf_counter()
        return strip


class BenchApp(App[None]):
    def __init__(self, expect: int) -> None:
        super().__init__()
        self.expect = expect

    def compose(self) -> ComposeResult:
        yield TimedLogView(self.expect)


async def _until(pilot: Pilot, check, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if check():
            return True
        await pilot.pause(step)
    return check()


async def _follow(path: Path, lines: int, batch: int, sampler: RssSampler) -> tuple[float, float, float, float]:
    """Phase 1: follow the growing file. Returns (baseline MB, peak MB, writer seconds, lag seconds)."""
    path.write_bytes(b"")
    app = BenchApp(lines)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(TimedLogView)
        view.follow_file(path)
        await pilot.pause(0.5)
        baseline = sampler.now()
        sampler.reset_peak()
        t0 = time.perf_counter()
        writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), str(lines), str(batch))
        while writer.returncode is None:
            await pilot.pause(0.1)
        t_written = time.perf_counter()
        ok = await _until(pilot, lambda: view.last_page_at is not None and view.scroll_y == view.max_scroll_y, 120)
        if not ok:
            raise SystemExit(f"the view did not catch up: {view.line_count:,} of {lines:,} lines")
        lag = max(0.0, (view.last_page_at or t_written) - t_written)
        await pilot.pause(0.3)
        return baseline / 1e6, sampler.peak / 1e6, t_written - t0, lag


def _index_time(path: Path, repeat: int) -> tuple[float, int]:
    """Phase 2: index the whole file from scratch."""
    times, count = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        index = LogIndex(path)
        index.refresh()
        times.append(time.perf_counter() - t)
        count = len(index)
    return statistics.median(times), count


async def _first_paint(path: Path, lines: int, sampler: RssSampler) -> tuple[float, float, float]:
    """Phase 3: a fresh view on the finished file. Returns (seconds to the last page, baseline MB, peak MB)."""
    app = BenchApp(lines)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(TimedLogView)
        await pilot.pause(0.3)
        baseline = sampler.now()
        sampler.reset_peak()
        t0 = time.perf_counter()
        view.follow_file(path)
        if not await _until(pilot, lambda: view.last_page_at is not None, 60, step=0.01):
            raise SystemExit("the last page was never painted")
        t_paint = (view.last_page_at or t0) - t0
        await pilot.pause(0.3)
        return t_paint, baseline / 1e6, sampler.peak / 1e6


def _first_paint_in_child(path: Path, lines: int) -> tuple[float, float, float]:
    """Phase 3 in a new process, so its RSS is not the residue of phase 1."""
    out = subprocess.run([sys.executable, __file__, "--paint-only", str(path), "--lines", str(lines)],
                         check=True, capture_output=True, text=True).stdout
    t_paint, baseline, peak = (float(v) for v in out.split()[-3:])
    return t_paint, baseline, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="lines per write of the writer process")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--paint-only", type=Path, default=None, help=argparse.SUPPRESS)  # phase 3's child
    args = parser.parse_args()
    if args.paint_only is not None:
        with RssSampler() as sampler:
            print(*asyncio.run(_first_paint(args.paint_only, args.lines, sampler)))
        return 0

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tui-log-"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "train.log"
    load = psutil.getloadavg()
    print(f"machine: {psutil.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    try:
        with RssSampler() as sampler:
            baseline, peak, t_write, lag = asyncio.run(_follow(path, args.lines, args.batch, sampler))
            t_index, count = _index_time(path, args.repeat)
        t_paint, baseline_paint, peak_paint = _first_paint_in_child(path, args.lines)
        size_mb = path.stat().st_size / 1e6
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"log follow: {count:,} lines ({size_mb:.0f} MB), peak RSS {peak:.1f} MB (app baseline {baseline:.1f} MB), "
          f"index {t_index:.2f} s")
    print(f"  writer grew the file in {t_write:.1f} s; the view showed the last line {lag:.2f} s after the last write")
    print(f"  first paint of the last page (follow_file on the finished file, fresh app): {t_paint:.2f} s, "
          f"peak RSS {peak_paint:.1f} MB (baseline {baseline_paint:.1f} MB)")
    ok = max(peak, peak_paint) < TARGET_MB
    print(f"target peak RSS < {TARGET_MB:.0f} MB: {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
