"""Speed of the dashboard's experiment history table (``HistoryTable``) with 10,000 experiments.

What is measured, headless (``App.run_test``, a 120x40 screen; no terminal, so no escape-sequence output):

* first paint: from just before ``run_test`` starts the app to the moment the table has rendered its last
  screen line for the first time (its ``render_line`` for the bottom line: the compositor asks a widget for
  all its lines in one go, so this is when the table's part of the first frame is done). The app's
  ``on_mount`` calls ``set_rows`` with the 10,000 rows, so the sort and the load are inside the figure; the
  rows themselves are built before the clock starts. "ready" is when the first ``pilot.pause()`` returns
  (the app idle after its first frame), and ``set_rows`` alone is timed too.
* update of one row: ``update_rows([row])`` with one changed row on the loaded 10k table (median over many
  calls; the repaint it asks for happens later, on the next frame, and costs O(visible lines)), for a row
  whose sort key stays and for one whose sort key moves (sorted by val_bpb), and an append of one new row
  while the cursor follows the last row.

``--datatable`` times Textual's own DataTable with the same rows the same way, for comparison.

    python benchmarks/tui_table.py [--rows 10000] [--repeat 3] [--datatable]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.text import Text  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.geometry import Region  # noqa: E402
from textual.strip import Strip  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from autoresearch.engine.view import ExperimentRow  # noqa: E402
from autoresearch.tui.widgets.history import HistoryTable  # noqa: E402

SIZE = (120, 40)
TARGET_S = 1.0
STATUSES = ["keep", "discard", "discard", "discard", "crash", "oom", "nan", "timeout", "invalid", "interrupted"]


def make_rows(count: int, seed: int = 0) -> list[ExperimentRow]:
    """Experiments like a long run's: mostly discards, some keeps and failures, descriptions of varied length."""
    rng = random.Random(seed)
    rows = []
    best = 1.0
    for i in range(count):
        status = "keep" if i == 0 else rng.choice(STATUSES)
        ok = status in ("keep", "discard")
        val = best + rng.uniform(-0.002, 0.01) if ok else None
        if status == "keep" and val is not None:
            best = min(best, val)
        rows.append(ExperimentRow(
            index=i, kind="baseline" if i == 0 else "agent", status=status, commit=f"{rng.getrandbits(160):040x}",
            parent=None, val_bpb=val, delta=None if val is None or i == 0 else val - best,
            description="increase the learning rate warmup and try a wider MLP " * rng.randint(1, 3),
            training_seconds=300.0 + rng.random() if status != "crash" else None,
            memory_gb=rng.uniform(8, 40) if status != "crash" else None, seeds=1 + (i % 3 == 0), test_bpb=None,
            reason="", started=None, finished=None))
    return rows


class Clock:
    """When the first line and the first full screen of the table were rendered."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_line: float | None = None
        self.first_frame: float | None = None

    def saw(self, y: int, height: int, rows: int) -> None:
        """A line was rendered (only lines of a loaded table count: not a frame painted before the load)."""
        if not rows:
            return
        now = time.perf_counter()
        if self.first_line is None:
            self.first_line = now
        if self.first_frame is None and height and y == height - 1:
            self.first_frame = now


class TimedHistoryTable(HistoryTable):
    clock: Clock

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        self.clock.saw(y, self.size.height, self.row_count)
        return strip


class TimedDataTable(DataTable[Any]):
    clock: Clock

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        self.clock.saw(y, self.size.height, self.row_count)
        return strip


class HistoryApp(App[None]):
    def __init__(self, rows: list[ExperimentRow], clock: Clock) -> None:
        super().__init__()
        self.rows, self.clock = rows, clock

    def compose(self) -> ComposeResult:
        table = TimedHistoryTable()
        table.clock = self.clock
        yield table

    def on_mount(self) -> None:
        self.query_one(HistoryTable).set_rows(self.rows)


class DataTableApp(App[None]):
    def __init__(self, rows: list[ExperimentRow], clock: Clock) -> None:
        super().__init__()
        self.rows, self.clock = rows, clock

    def compose(self) -> ComposeResult:
        table = TimedDataTable(cursor_type="row")
        table.clock = self.clock
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "commit", "val_bpb", "Δ best", "status", "description", "train s", "mem GB")
        table.add_rows([datatable_cells(r) for r in self.rows])


def datatable_cells(r: ExperimentRow) -> tuple[Any, ...]:
    def num(v: float | None, d: int) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    return (str(r.index), r.commit[:7], num(r.val_bpb, 6), "-" if r.delta is None else f"{r.delta:+.6f}",
            Text(r.status, style="bold green" if r.status == "keep" else ""), r.description[:50],
            num(r.training_seconds, 1), num(r.memory_gb, 1))


async def first_paint(app_class: type[App[None]], rows: list[ExperimentRow]) -> tuple[float, float, float]:
    """Seconds from app start to the table's first line, its first full screen, and the app being idle."""
    clock = Clock()
    app = app_class(rows, clock)  # type: ignore[call-arg]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        ready = time.perf_counter()
    assert clock.first_line is not None and clock.first_frame is not None, "the table never painted"
    return clock.first_line - clock.start, clock.first_frame - clock.start, ready - clock.start


def repaint(table: HistoryTable, current: dict[int, ExperimentRow], calls: int = 200) -> float:
    """Median seconds to render every screen line after one visible row changed (what the next frame asks)."""
    height = table.scrollable_content_region.height
    top = table.scroll_offset.y
    times = []
    for n in range(calls):
        r = current[table.row_at(top + n % max(1, height - 1)).index]
        current[r.index] = r = replace(r, description=f"{r.description[:40]} repaint {n}")
        table.update_rows([r])
        t = time.perf_counter()
        table.render_lines(Region(0, 0, table.size.width, height))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def update_costs(rows: list[ExperimentRow], calls: int) -> dict[str, float]:
    """Median seconds of ``update_rows`` with one row, for three kinds of change, on a loaded table."""
    clock = Clock()
    app = HistoryApp(rows, clock)
    rng = random.Random(1)
    out: dict[str, float] = {}
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(HistoryTable)
        table.select_index(rows[len(rows) // 2].index)  # not following: the plain upsert path

        def timed(make: Any) -> float:
            times = []
            for n in range(calls):
                row = make(n)
                t = time.perf_counter()
                table.update_rows([row])
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        current = {r.index: r for r in rows}

        def same_key(n: int) -> ExperimentRow:
            r = current[rng.randrange(len(rows))]
            current[r.index] = r = replace(r, description=f"{r.description[:40]} edit {n}")
            return r

        def moved_key(n: int) -> ExperimentRow:
            r = current[rng.randrange(len(rows))]
            current[r.index] = r = replace(r, val_bpb=rng.uniform(0.95, 1.05))
            return r

        out["same sort key"] = timed(same_key)
        out["repaint"] = repaint(table, current)
        table.sort_by("val_bpb")
        out["sort key moved (by val_bpb)"] = timed(moved_key)
        await pilot.pause()
        table.sort_by("index")
        table.action_cursor_last()
        next_index = len(rows)

        def appended(n: int) -> ExperimentRow:
            return replace(rows[-1], index=next_index + n, status="running", val_bpb=None, delta=None)

        out["append, cursor following"] = timed(appended)
        await pilot.pause()
    return out


def time_set_rows(rows: list[ExperimentRow]) -> float:
    """Seconds of one ``set_rows`` on a fresh, unmounted table."""
    table = HistoryTable()
    t = time.perf_counter()
    table.set_rows(rows)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="first-paint runs (the median is printed)")
    parser.add_argument("--calls", type=int, default=500, help="update_rows calls per kind of change")
    parser.add_argument("--datatable", action="store_true", help="also time Textual's DataTable")
    args = parser.parse_args()
    rows = make_rows(args.rows)

    runs = [asyncio.run(first_paint(HistoryApp, rows)) for _ in range(args.repeat)]
    line, frame, ready = (statistics.median(r[i] for r in runs) for i in range(3))
    cold = runs[0][1]
    set_rows_s = statistics.median(time_set_rows(rows) for _ in range(5))
    updates = asyncio.run(update_costs(rows, args.calls))
    one = updates["same sort key"]
    print(f"history table: {args.rows:,} rows, first paint {frame:.2f} s, update of one row {one * 1e3:.2f} ms")
    print(f"  app start -> first line {line:.3f} s, -> full first screen {frame:.3f} s, -> app idle {ready:.3f} s"
          f" (median of {args.repeat}; the first, cold run: full first screen {cold:.3f} s;"
          f" headless {SIZE[0]}x{SIZE[1]}; set_rows in on_mount included)")
    print(f"  set_rows alone (dict + sort of {args.rows:,} rows, warm): {set_rows_s * 1e3:.1f} ms")
    repainted = updates.pop("repaint")
    for kind, seconds in updates.items():
        print(f"  update_rows, one row, {kind}: {seconds * 1e3:.3f} ms (median of {args.calls})")
    print(f"  the next frame after such an update (render_lines of the {SIZE[1]}-line table, the changed row"
          f" re-formatted, the others from the cache): {repainted * 1e3:.3f} ms (median of 200)")
    print(f"  target: first paint under {TARGET_S:.1f} s: {'ok' if max(frame, cold) < TARGET_S else 'MISSED'}")
    if args.datatable:
        dt = [asyncio.run(first_paint(DataTableApp, rows)) for _ in range(args.repeat)]
        d_line, d_frame, d_ready = (statistics.median(r[i] for r in dt) for i in range(3))
        print(f"  Textual DataTable, same rows: first line {d_line:.3f} s, full first screen {d_frame:.3f} s,"
              f" app idle {d_ready:.3f} s")


if __name__ == "__main__":
    main()
