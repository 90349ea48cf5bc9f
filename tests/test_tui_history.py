"""The experiment history table (``autoresearch.tui.widgets.history``), driven headless with Textual's Pilot.

pytest-asyncio is not a dependency, so each test is a plain function running its scenario with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import html
import random
import re
from typing import Any, Awaitable, Callable

from rich.style import Style
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from autoresearch.engine.view import ExperimentRow
from autoresearch.tui.widgets.history import SORT_CYCLE, HistoryTable, cell, fit, sort_key

STATUSES = ["keep", "discard", "crash", "oom", "nan", "timeout", "invalid", "interrupted", "confirming", "running",
            "interrupted?"]


def make_row(index: int, **changes: Any) -> ExperimentRow:
    """A plausible experiment: the status cycles through every word, the figures vary with the index."""
    status = STATUSES[index % len(STATUSES)]
    failed = status in ("crash", "oom", "nan", "timeout", "invalid", "running", "confirming", "interrupted?")
    fields: dict[str, Any] = dict(
        index=index, kind="baseline" if index == 0 else "agent", status=status,
        commit=f"{index:07x}" + "f" * 33, parent=None,
        val_bpb=None if failed else 1.0 + (index * 37 % 101) / 1000,
        delta=None if failed or index == 0 else ((index * 13) % 7 - 3) / 1000,
        description=f"experiment {index}: try a wider MLP with a longer warmup and see what happens",
        training_seconds=None if status == "crash" else 300.0 + index / 10,
        memory_gb=None if status == "crash" else 10.0 + index % 5,
        seeds=1, test_bpb=None, reason="", started=None, finished=None,
    )
    fields.update(changes)
    return ExperimentRow(**fields)


def make_rows(count: int, start: int = 0) -> list[ExperimentRow]:
    return [make_row(i) for i in range(start, start + count)]


class TableApp(App[None]):
    """One HistoryTable filling the screen; records every Selected it posts."""

    def __init__(self, initial_rows: list[ExperimentRow] | None = None, **table_options: Any) -> None:
        super().__init__()
        self.initial_rows = initial_rows
        self.table_options = table_options
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        yield HistoryTable(**self.table_options)

    def on_mount(self) -> None:
        table = self.query_one(HistoryTable)
        if self.initial_rows is not None:
            table.set_rows(self.initial_rows)
        table.focus()

    def on_history_table_selected(self, message: HistoryTable.Selected) -> None:
        self.selected.append(message.row.index)


Scenario = Callable[[TableApp, HistoryTable, Pilot[None]], Awaitable[None]]


def run(scenario: Scenario, rows: list[ExperimentRow] | None = None, size: tuple[int, int] = (120, 40),
        app: TableApp | None = None) -> None:
    """Run one scenario in a headless app of ``size`` whose table was loaded with ``rows``."""

    async def main() -> None:
        the_app = app or TableApp(rows)
        async with the_app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(the_app, the_app.query_one(HistoryTable), pilot)

    asyncio.run(main())


def screen_lines(table: HistoryTable) -> list[str]:
    """The text of every line of the table as it is on screen now."""
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


def body_indices(table: HistoryTable) -> list[int]:
    """The experiment indices of the body lines on screen, top to bottom."""
    return [int(line.split()[0]) for line in screen_lines(table)[1:] if line.strip()]


def screenshot_text(app: App[None]) -> str:
    """The text of the app's SVG screenshot (tags dropped, entities and no-break spaces undone)."""
    return html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")


def segment_style(table: HistoryTable, y: int, text: str) -> Style:
    """The style of the first segment on line ``y`` whose text, stripped, is ``text``."""
    for segment in table.render_line(y):
        if segment.text.strip() == text:
            return segment.style or Style()
    raise AssertionError(f"no {text!r} on line {y}: {table.render_line(y).text!r}")


def component(table: HistoryTable, name: str) -> Style:
    return table.get_component_rich_style(f"history-table--{name}", partial=True)


# -- rendering ---------------------------------------------------------------------------------------------
def test_every_status_renders_with_its_columns() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home")
        lines = screen_lines(table)
        header = lines[0]
        for label in ("#▲", "commit", "val_bpb", "Δ best", "status", "description", "train s", "mem GB"):
            assert label in header
        body = "\n".join(lines[1:])
        for status in STATUSES:
            assert status in body
        assert "▶ running" in body and "▶ confirming" in body
        first = lines[1].split()
        assert first[:3] == ["0", "0000000", "1.000000"]  # index, 7-char commit, 6 decimals
        assert first[3] == "-"  # the baseline has no delta
        row1 = lines[2]
        assert "0000001" in row1 and "1.037000" in row1 and "+0.003000" in row1 and "300.1" in row1
        assert "11.0" in row1
        crash = lines[3]  # index 2 crashed: no val_bpb, no time, no memory
        assert crash.split()[2:5] == ["-", "-", "crash"] and crash.split()[-2:] == ["-", "-"]
        assert all("…" in line for line in lines[1:34])  # the long descriptions are truncated
        assert all(len(line) == table.scrollable_content_region.width for line in lines)
        assert "experiment 0: try a wider" in lines[1]

    run(scenario, make_rows(33))


def test_status_and_delta_colours() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home")
        keep = segment_style(table, 1, "keep")
        assert keep.bold and keep.color == component(table, "keep").color
        assert segment_style(table, 2, "discard").dim
        crash = segment_style(table, 3, "crash")
        assert crash.bold and crash.color == component(table, "crash").color
        assert segment_style(table, 4, "oom").color == component(table, "failed").color
        assert segment_style(table, 8, "interrupted").color == component(table, "interrupted").color
        assert segment_style(table, 10, "▶ running").color == component(table, "live").color
        assert segment_style(table, 2, "+0.003000").color == component(table, "worse").color  # index 1
        assert segment_style(table, 13, "-0.001000").color == component(table, "better").color  # index 12
        assert component(table, "better").color != component(table, "worse").color

    run(scenario, make_rows(33))


def test_cursor_row_is_highlighted() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home", "down")
        cursor_bg = table.get_component_rich_style("history-table--cursor").bgcolor
        assert cursor_bg is not None
        assert segment_style(table, 2, "1").bgcolor == cursor_bg
        assert segment_style(table, 1, "0").bgcolor != cursor_bg

    run(scenario, make_rows(33))


def test_empty_state() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        lines = screen_lines(table)
        assert "status" in lines[0]
        assert lines[1].strip() == "no experiments yet"
        assert table.selected is None
        await pilot.press("down", "end", "o")  # nothing to move over, nothing breaks
        assert table.selected is None and app.selected == []
        assert "no experiments yet" in screenshot_text(app)

    run(scenario, None)


def test_narrow_widths_drop_columns() -> None:
    async def wide(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        header = screen_lines(table)[0]
        assert "train s" in header and "mem GB" in header and "commit" in header

    async def medium(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        header = screen_lines(table)[0]
        assert "train s" not in header and "mem GB" not in header and "commit" in header
        assert "description" in header
        assert "experiment 32: try" in screen_lines(table)[-1]

    async def narrow(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        header = screen_lines(table)[0]
        assert "commit" not in header and "train s" not in header
        assert "status" in header and "descr" in header
        assert "experiment 32" in screen_lines(table)[-1]

    run(wide, make_rows(33), size=(100, 20))
    run(medium, make_rows(33), size=(80, 20))
    run(narrow, make_rows(33), size=(60, 20))


def test_fit_truncates_with_an_ellipsis() -> None:
    assert fit("abcdef", 4) == "abc…"
    assert fit("ab", 4) == "ab  " and fit("ab", 4, "right") == "  ab"
    assert fit("漢字漢字", 5) == "漢字…"  # cut by cells, not characters
    assert fit("漢字漢字", 4) == "漢 …"  # a wide character never straddles the cut


# -- cursor ------------------------------------------------------------------------------------------------
def test_cursor_keys_move_the_selection_and_post_selected() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        assert table.selected is not None and table.selected.index == 39  # a first load starts on the newest
        assert app.selected == [39]
        await pilot.press("home")
        assert table.selected.index == 0
        await pilot.press("down", "j", "j")
        assert table.selected.index == 3
        await pilot.press("up", "k")
        assert table.selected.index == 1
        await pilot.press("pagedown")
        body = table.scrollable_content_region.height - 1
        assert table.selected.index == 1 + body
        await pilot.press("pageup")
        assert table.selected.index == 1
        await pilot.press("G")
        assert table.selected.index == 39 and body_indices(table)[-1] == 39
        await pilot.press("g")
        assert table.selected.index == 0 and body_indices(table)[0] == 0
        await pilot.press("end")
        await pilot.press("up")  # already moved: one Selected per move, none for a key that does not move
        await pilot.press("home", "up")
        await pilot.pause()
        assert app.selected == [39, 0, 1, 2, 3, 2, 1, 1 + body, 1, 39, 0, 39, 38, 0]

    run(scenario, make_rows(40), size=(120, 12))


def test_the_cursor_stays_in_view_and_the_last_row_is_reachable() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home")
        for _ in range(15):
            await pilot.press("down")
        assert table.selected.index == 15
        assert 15 in body_indices(table) and body_indices(table)[-1] == 15  # scrolled the least
        await pilot.press("end")
        assert body_indices(table) == list(range(100 - 9, 100))
        table.scroll_end(animate=False)
        await pilot.pause()
        assert body_indices(table)[-1] == 99
        assert screen_lines(table)[0].split()[0] == "#▲"  # the header stays put

    run(scenario, make_rows(100), size=(120, 10))


def test_mouse_click_selects_a_row_and_the_header_sorts() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home")
        await pilot.click(HistoryTable, offset=(10, 4))
        assert table.selected.index == 3
        await pilot.click(HistoryTable, offset=(10, 39))  # below the last row: nothing
        assert table.selected.index == 3
        x = screen_lines(table)[0].index("val_bpb")
        await pilot.click(HistoryTable, offset=(x + 2, 0))
        assert table.sort_column == "val_bpb" and not table.sort_reverse
        await pilot.click(HistoryTable, offset=(x + 2, 0))
        assert table.sort_reverse
        assert table.selected.index == 3

    run(scenario, make_rows(20))


def test_select_index() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        assert table.select_index(5)
        await pilot.pause()
        assert table.selected.index == 5 and 5 in body_indices(table)
        assert not table.select_index(12345)
        assert table.selected.index == 5
        assert app.selected[-1] == 5

    run(scenario, make_rows(300), size=(120, 20))


def test_keymap_remaps_the_bindings() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        app.set_keymap({"history.down": "n", "history.first": "a", "history.sort": "s"})
        await pilot.press("a")
        assert table.selected.index == 0
        await pilot.press("n", "n")
        assert table.selected.index == 2
        await pilot.press("s")
        assert table.sort_column == "val_bpb"

    run(scenario, make_rows(20))


def test_every_binding_has_an_id() -> None:
    ids = {binding.id for binding in HistoryTable.BINDINGS}  # type: ignore[union-attr]
    assert None not in ids
    assert {"history.sort", "history.reverse", "history.down", "history.up"} <= ids


# -- sorting -----------------------------------------------------------------------------------------------
def test_sort_by_val_bpb_puts_the_lowest_first_and_keeps_the_selection() -> None:
    rows = make_rows(40)

    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        table.select_index(22)
        await pilot.press("o")
        assert table.sort_column == "val_bpb" and not table.sort_reverse
        assert "val_bpb▲" in screen_lines(table)[0] and "#▲" not in screen_lines(table)[0]
        finite = sorted((r.val_bpb, r.index) for r in rows if r.val_bpb is not None)
        assert table.row_at(0).index == finite[0][1]
        order = [table.row_at(p) for p in range(table.row_count)]
        values = [r.val_bpb for r in order if r.val_bpb is not None]
        assert values == sorted(values)
        assert all(r.val_bpb is None for r in order[len(values):])  # missing ones last
        assert table.selected.index == 22 and 22 in body_indices(table)
        await pilot.press("O")
        assert table.sort_reverse and "val_bpb▼" in screen_lines(table)[0]
        assert table.row_at(0).index == max(finite)[1]
        assert table.row_at(table.row_count - 1).val_bpb is None  # missing ones still last
        assert table.selected.index == 22

    run(scenario, rows, size=(120, 15))


def test_o_cycles_the_sort_columns() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        seen = [table.sort_column]
        for _ in range(len(SORT_CYCLE)):
            await pilot.press("o")
            seen.append(table.sort_column)
        assert seen == ["index", "val_bpb", "delta", "status", "training_seconds", "index"]
        await pilot.press("o", "o", "o")
        assert table.sort_column == "status"
        assert table.row_at(0).status == "running" and "status▲" in screen_lines(table)[0]
        await pilot.press("o")
        assert "train s▲" in screen_lines(table)[0]

    run(scenario, make_rows(40))


# -- updates -----------------------------------------------------------------------------------------------
def test_update_rows_appends_and_follows_from_the_last_row() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        assert table.selected.index == 29
        table.update_rows([make_row(30, status="running"), make_row(31, status="running")])
        await pilot.pause()
        assert table.row_count == 32
        assert table.selected.index == 31
        assert body_indices(table)[-1] == 31
        assert "▶ running" in screen_lines(table)[-1]
        table.update_rows([make_row(31, status="keep", val_bpb=0.9)])  # a change, no new row: stays
        await pilot.pause()
        assert table.selected.index == 31 and "keep" in screen_lines(table)[-1]
        assert app.selected == [29, 31]

    run(scenario, make_rows(30), size=(120, 12))


def test_update_rows_does_not_move_the_selection_otherwise() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        table.sort_by("val_bpb")
        table.select_index(12)
        await pilot.pause()
        count = len(app.selected)
        better = [make_row(i, status="keep", val_bpb=0.5 + i / 1000) for i in range(30, 35)]
        table.update_rows(better)  # all sort before the selection: it moves down five lines, same experiment
        await pilot.pause()
        assert table.selected.index == 12
        assert table.row_at(0).index == 30
        assert 12 in body_indices(table)
        table.update_rows([make_row(12, val_bpb=2.0)])  # the selected experiment itself re-sorts
        await pilot.pause()
        assert table.selected.index == 12 and table.selected.val_bpb == 2.0
        assert len(app.selected) == count  # still the same experiment: no Selected

    run(scenario, make_rows(30), size=(120, 20))


def test_update_rows_repaints_a_changed_row() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        await pilot.press("home")
        assert "experiment 3: try" in screen_lines(table)[4]
        table.update_rows([make_row(3, description="a brand new idea")])
        await pilot.pause()
        assert "a brand new idea" in screen_lines(table)[4]
        assert "a brand new idea" in screenshot_text(app)
        assert "experiment 4: try" in screen_lines(table)[5]

    run(scenario, make_rows(20))


def test_update_rows_keeps_the_order_under_random_upserts() -> None:
    rng = random.Random(7)

    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        current = {r.index: r for r in make_rows(200)}
        for column in ("val_bpb", "delta", "status", "training_seconds", "index"):
            table.sort_by(column, reverse=rng.random() < 0.5)
            for _ in range(20):
                batch = []
                for _ in range(rng.randint(1, 6)):
                    index = rng.randint(0, len(current) + 2)
                    row = make_row(index, val_bpb=rng.choice([None, rng.uniform(0.9, 1.1)]),
                                   status=rng.choice(STATUSES), delta=rng.choice([None, rng.uniform(-0.01, 0.01)]))
                    batch.append(row)
                    current[index] = row
                selected = table.selected.index
                at_end = table.cursor_position == table.row_count - 1
                added = any(r.index not in {table.row_at(p).index for p in range(table.row_count)} for r in batch)
                table.update_rows(batch)
                expected = sorted(current.values(), key=lambda r: sort_key(r, column, table.sort_reverse))
                assert [table.row_at(p) for p in range(table.row_count)] == expected
                if at_end and added:
                    assert table.cursor_position == table.row_count - 1
                else:
                    assert table.selected.index == selected
        await pilot.pause()

    run(scenario, make_rows(200))


def test_a_large_batch_of_updates_is_sorted_once() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        table.sort_by("val_bpb", reverse=True)
        table.select_index(7)
        batch = [make_row(i, val_bpb=2.0 - i / 10_000) for i in range(0, 1500, 2)]
        table.update_rows(batch)
        await pilot.pause()
        current = {r.index: r for r in make_rows(1000)} | {r.index: r for r in batch}
        expected = sorted(current.values(), key=lambda r: sort_key(r, "val_bpb", True))
        assert [table.row_at(p) for p in range(table.row_count)] == expected
        assert table.selected.index == 7

    run(scenario, make_rows(1000))


def test_set_rows_replaces_everything_and_keeps_the_selection() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        table.select_index(4)
        table.set_rows(make_rows(8))
        await pilot.pause()
        assert table.row_count == 8 and table.selected.index == 4
        table.set_rows(make_rows(3))  # the selection is gone: the cursor goes to the last row
        await pilot.pause()
        assert table.selected.index == 2
        table.set_rows([])
        await pilot.pause()
        assert table.selected is None and "no experiments yet" in screen_lines(table)[1]
        table.update_rows(make_rows(5))
        await pilot.pause()
        assert table.selected.index == 4

    run(scenario, make_rows(20))


def test_rows_given_to_the_constructor_and_start_at_top() -> None:
    app = TableApp(None, rows=make_rows(50), start_at_end=False)

    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        assert table.selected.index == 0 and body_indices(table)[0] == 0
        assert app.selected == [0]

    run(scenario, app=app)


def test_the_index_column_widens() -> None:
    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        table.update_rows([make_row(123456)])
        await pilot.pause()
        assert screen_lines(table)[-1].split()[0] == "123456"
        lines = screen_lines(table)
        assert lines[1].index("0000000") == lines[-1].index(f"{123456:07x}")  # every line laid out alike

    run(scenario, make_rows(10), size=(120, 12))


# -- scale -------------------------------------------------------------------------------------------------
class CountingTable(HistoryTable):
    """Counts the rows it formats."""

    formatted = 0

    def _format_row(self, row: ExperimentRow, width: int, selected: bool):  # type: ignore[no-untyped-def]
        CountingTable.formatted += 1
        return super()._format_row(row, width, selected)


class CountingApp(TableApp):
    def compose(self) -> ComposeResult:
        yield CountingTable()


def test_ten_thousand_rows_format_only_what_is_on_screen() -> None:
    CountingTable.formatted = 0
    rows = make_rows(10_000)

    async def scenario(app: TableApp, table: HistoryTable, pilot: Pilot[None]) -> None:
        assert table.row_count == 10_000 and table.selected.index == 9_999
        assert body_indices(table)[-1] == 9_999
        visible = table.scrollable_content_region.height
        assert CountingTable.formatted <= 2 * visible
        await pilot.press("home")
        assert body_indices(table)[0] == 0
        before = CountingTable.formatted
        table.update_rows([make_row(5, description="changed")])
        await pilot.pause()
        assert "changed" in screen_lines(table)[6]
        assert CountingTable.formatted - before <= 2  # only the changed row is formatted again
        await pilot.press("o")
        assert table.row_at(0).val_bpb == min(r.val_bpb for r in rows if r.val_bpb is not None)
        assert CountingTable.formatted <= 10 * visible

    run(scenario, app=CountingApp(rows))


def test_a_change_stopped_early_says_where_instead_of_a_score() -> None:
    row = make_row(3, status="discard", val_bpb=None, delta=None,
                   reason="stopped early at 35% (projected 3.8863, best 2.8293, margin 0.2769)")
    assert cell(row, "val_bpb") == ("stop 35%", "history-table--missing")
    assert cell(make_row(3, status="discard", val_bpb=None, reason="worse"), "val_bpb") == ("-", "history-table--missing")
