"""The experiment history table: a virtual table on Textual's Line API.

:class:`HistoryTable` shows one line per :class:`~autoresearch.engine.view.ExperimentRow` under a header that
stays put while the body scrolls. It is built for runs with tens of thousands of experiments: the rows live in
a dict by experiment index plus one sorted list of sort keys, only the lines on screen are ever formatted, and
each formatted line is cached as a :class:`~textual.strip.Strip` per (experiment index, width, selected), so a
paint costs O(visible lines) and an update O(changed rows) (plus a bisect per row whose sort key moved).

Call its methods from the UI thread (the poller thread hands rows over in a posted message).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import ClassVar, Iterable, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from autoresearch.engine.earlystop import stopped_at
from autoresearch.engine.view import ExperimentRow

Align = Literal["left", "right"]
SortKey = tuple[int, float, int, int]  # (missing, signed value, signed index, index): unique, ends in the index

SORT_CYCLE: tuple[str, ...] = ("index", "val_bpb", "delta", "status", "training_seconds")
"""The sort columns ``o`` cycles through, in order."""

STATUS_RANK: dict[str, int] = {
    status: rank for rank, status in enumerate(
        ("running", "confirming", "keep", "discard", "interrupted?", "interrupted",
         "timeout", "invalid", "nan", "oom", "crash"))
}
"""How the status column sorts: live first, then kept, discarded, and the failures."""

STATUS_COMPONENT: dict[str, str] = {
    "keep": "history-table--keep",
    "discard": "history-table--discard",
    "crash": "history-table--crash",
    "oom": "history-table--failed",
    "nan": "history-table--failed",
    "timeout": "history-table--failed",
    "invalid": "history-table--invalid",
    "interrupted": "history-table--interrupted",
    "interrupted?": "history-table--interrupted",
    "confirming": "history-table--live",
    "running": "history-table--live",
}
LIVE_MARKER = "▶ "
EMPTY_TEXT = "no experiments yet"
MISSING = "-"
GAP = 2  # blank cells between two columns
LEAD = 1  # blank cells before the first column
WIDE_MIN = 90  # below this width the training seconds and memory columns go
MEDIUM_MIN = 70  # below this width the commit column goes too
CACHE_LIMIT = 4096  # rendered lines kept before the cache starts over
BULK_MIN = 256  # an update of more rows than this (and an eighth of the table) re-sorts all at once


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: ``width`` 0 means it takes the width the others leave."""

    key: str
    label: str
    width: int
    align: Align = "right"
    min_table_width: int = 0  # the column is shown only when the table is at least this wide


COLUMNS: tuple[Column, ...] = (
    Column("index", "#", 3),  # widened to the number of digits of the largest index
    Column("commit", "commit", 7, "left", MEDIUM_MIN),
    Column("val_bpb", "val_bpb", 9),
    Column("delta", "Δ best", 10),
    Column("status", "status", 12, "left"),
    Column("description", "description", 0, "left"),
    Column("training_seconds", "train s", 8, "right", WIDE_MIN),
    Column("memory_gb", "mem GB", 6, "right", WIDE_MIN),
)


@dataclass(frozen=True, slots=True)
class Placed:
    """A column as laid out at one width: where it starts and how wide it is."""

    column: Column
    x: int
    width: int


# -- formatting (pure functions of one row) ---------------------------------------------------------------
def fit(text: str, width: int, align: Align = "left") -> str:
    """``text`` in exactly ``width`` cells: truncated with an ellipsis, else padded on the side ``align`` says."""
    if width <= 0:
        return ""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - length)
    return pad + text if align == "right" else text + pad


def finite(value: float | None) -> bool:
    """Whether a number can be shown and sorted as one (not missing, not NaN or infinite)."""
    return value is not None and math.isfinite(value)


def format_number(value: float | None, decimals: int, signed: bool = False) -> str:
    """A fixed-point figure, ``-`` when missing; a signed one shows ``+`` (and no negative zero)."""
    if value is None:
        return MISSING
    if signed:
        return f"{value + 0.0:+.{decimals}f}"
    return f"{value:.{decimals}f}"


def format_status(status: str) -> str:
    """The status word, with a marker for an experiment still training."""
    return LIVE_MARKER + status if status in ("running", "confirming") else status


def one_line(text: str) -> str:
    """A description on one line (newlines and tabs become spaces)."""
    return " ".join(text.split()) if any(c in text for c in "\n\r\t") else text


def cell(row: ExperimentRow, key: str) -> tuple[str, str | None]:
    """The text of one cell and the component class that colours it (None: the row's own colour)."""
    if key == "index":
        return str(row.index), None
    if key == "commit":
        return (row.commit[:7], None) if row.commit else (MISSING, "history-table--missing")
    if key == "val_bpb":
        share = stopped_at(row.reason) if row.val_bpb is None and row.status == "discard" else None
        if share is not None:  # no score: the training was stopped part-way as hopeless
            return f"stop {share}", "history-table--missing"
        return number_cell(row.val_bpb, 6)
    if key == "delta":
        return delta_cell(row.delta)
    if key == "status":
        return format_status(row.status), STATUS_COMPONENT.get(row.status)
    if key == "description":
        return one_line(row.description), None
    if key == "training_seconds":
        return number_cell(row.training_seconds, 1)
    if key == "memory_gb":
        return number_cell(row.memory_gb, 1)
    raise KeyError(key)


def number_cell(value: float | None, decimals: int) -> tuple[str, str | None]:
    """A plain figure, dimmed ``-`` when missing."""
    return format_number(value, decimals), (None if value is not None else "history-table--missing")


def delta_cell(delta: float | None) -> tuple[str, str | None]:
    """The change against the best: green when better (negative), red when worse."""
    if delta is None:
        return MISSING, "history-table--missing"
    component = "history-table--better" if delta < 0 else "history-table--worse" if delta > 0 else None
    return format_number(delta, 6, signed=True), component


def sort_key(row: ExperimentRow, column: str, reverse: bool) -> SortKey:
    """The key a row sorts by: unique (the index breaks ties), missing values last in either direction."""
    sign = -1 if reverse else 1
    if column == "index":
        return (0, 0.0, sign * row.index, row.index)
    if column == "status":
        value: float | None = float(STATUS_RANK.get(row.status, len(STATUS_RANK)))
    else:
        value = getattr(row, column)
    if not finite(value):
        return (1, 0.0, sign * row.index, row.index)
    assert value is not None
    return (0, sign * value, sign * row.index, row.index)


def layout(width: int, index_width: int) -> tuple[Placed, ...]:
    """Where each column goes at a table width: the narrow breakpoints drop columns, the description flexes."""
    shown = [c for c in COLUMNS if width >= c.min_table_width]
    widths = [max(index_width, c.width) if c.key == "index" else c.width for c in shown]
    fixed = LEAD + sum(widths) + GAP * (len(shown) - 1)
    flexible = max(1, width - fixed)
    placed: list[Placed] = []
    x = LEAD
    for column, w in zip(shown, widths):
        w = w or flexible
        placed.append(Placed(column, x, w))
        x += w + GAP
    return tuple(placed)


class HistoryTable(ScrollView, can_focus=True):
    """The experiments of a run, one per line, under a fixed header; sortable, with a row cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="history.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="history.down"),
        Binding("pageup", "cursor_page_up", "Page up", show=False, id="history.page_up"),
        Binding("pagedown", "cursor_page_down", "Page down", show=False, id="history.page_down"),
        Binding("home,g", "cursor_first", "First", show=False, id="history.first"),
        Binding("end,G", "cursor_last", "Last", show=False, id="history.last"),
        Binding("o", "cycle_sort", "Sort", id="history.sort"),
        Binding("O", "reverse_sort", "Reverse", show=False, id="history.reverse"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "history-table--header", "history-table--header-sort", "history-table--cursor", "history-table--empty",
        "history-table--missing", "history-table--better", "history-table--worse",
        "history-table--keep", "history-table--discard", "history-table--crash", "history-table--failed",
        "history-table--invalid", "history-table--interrupted", "history-table--live",
    }

    DEFAULT_CSS = """
    HistoryTable {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        background: $surface;
        color: $foreground;
        & > .history-table--header { background: $panel; color: $foreground; text-style: bold; }
        & > .history-table--header-sort { color: $text-accent; text-style: bold; }
        & > .history-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .history-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .history-table--empty { color: $text-muted; text-style: italic; }
        & > .history-table--missing { color: $text-muted; }
        & > .history-table--better { color: $text-success; }
        & > .history-table--worse { color: $text-error; }
        & > .history-table--keep { color: $text-success; text-style: bold; }
        & > .history-table--discard { text-style: dim; }
        & > .history-table--crash { color: $text-error; text-style: bold; }
        & > .history-table--failed { color: $text-error; }
        & > .history-table--invalid { color: $text-error; text-style: italic; }
        & > .history-table--interrupted { color: $text-warning; }
        & > .history-table--live { color: ansi_cyan; text-style: bold; }
    }
    """

    class Selected(Message):
        """The cursor moved to another experiment (posted on every move: debounce in the consumer)."""

        def __init__(self, table: HistoryTable, row: ExperimentRow) -> None:
            self.table = table
            self.row = row
            super().__init__()

        @property
        def control(self) -> HistoryTable:
            """The table the cursor moved in."""
            return self.table

    def __init__(self, rows: Iterable[ExperimentRow] = (), *, start_at_end: bool = True, name: str | None = None,
                 id: str | None = None, classes: str | None = None, disabled: bool = False) -> None:
        """``start_at_end``: a first load puts the cursor on the last row (so a live run follows the newest)."""
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.start_at_end = start_at_end
        self._rows: dict[int, ExperimentRow] = {}
        self._keys: list[SortKey] = []  # ascending; the view's order
        self._sort_column = "index"
        self._sort_reverse = False
        self._cursor = 0  # position in _keys (meaningless while empty)
        self._selected_index: int | None = None  # the experiment under the cursor
        self._index_width = 1  # digits of the largest index
        self._cache: dict[tuple[int, int, bool], Strip] = {}
        self._cached_widths: set[int] = set()
        self._header: tuple[tuple[object, ...], Strip] | None = None
        self._layouts: dict[tuple[int, int], tuple[Placed, ...]] = {}
        self._frame: tuple[int, int] | None = None  # (width, scroll_y) while render_lines runs
        if rows:
            self.set_rows(list(rows))

    # -- public API -----------------------------------------------------------------------------------
    @property
    def selected(self) -> ExperimentRow | None:
        """The experiment under the cursor (None while the table is empty)."""
        return None if self._selected_index is None else self._rows.get(self._selected_index)

    @property
    def row_count(self) -> int:
        """How many experiments the table holds."""
        return len(self._keys)

    @property
    def cursor_position(self) -> int | None:
        """The cursor's line in the body (0 = first row), None while empty."""
        return self._cursor if self._keys else None

    @property
    def sort_column(self) -> str:
        """The key the rows are sorted by (one of :data:`SORT_CYCLE`)."""
        return self._sort_column

    @property
    def sort_reverse(self) -> bool:
        """Whether the sort is descending."""
        return self._sort_reverse

    def row_at(self, position: int) -> ExperimentRow | None:
        """The experiment on a body line (0 = first row), None past the end."""
        if 0 <= position < len(self._keys):
            return self._rows[self._keys[position][-1]]
        return None

    def set_rows(self, rows: list[ExperimentRow]) -> None:
        """Replace every row (the first load, or after the ledger was reset); keeps the selection if it is there."""
        following = self._at_end()
        was_empty = not self._keys
        self._rows = {row.index: row for row in rows}
        self._index_width = len(str(max(self._rows, default=0)))
        self._clear_cache()
        self._resort()
        if was_empty:
            self._cursor = len(self._keys) - 1 if self.start_at_end else 0
        elif following or self._selected_index not in self._rows:
            self._cursor = len(self._keys) - 1
        else:
            self._cursor = self._position_of(self._selected_index)
        self._after_change(scroll=True)

    def update_rows(self, rows: list[ExperimentRow]) -> None:
        """Upsert rows by experiment index: new ones are added, changed ones replaced, equal ones ignored.

        Costs O(changed rows), plus a bisect and a list insert for each row whose sort key moved (a batch
        that changes a large part of the table is sorted once instead). When the cursor is on the last row
        and new experiments arrive, it moves to the new last row; otherwise it stays on the same experiment
        wherever that now sorts.
        """
        was_empty = not self._keys
        following = self._at_end()
        bulk = len(rows) > max(BULK_MIN, len(self._keys) // 8)
        added = False
        widest = self._index_width
        for row in rows:
            old = self._rows.get(row.index)
            if old == row:
                continue
            self._rows[row.index] = row
            self._invalidate(row.index)
            if not bulk:
                self._place(row, old)
            added = added or old is None
            widest = max(widest, len(str(row.index)))
        if bulk:
            self._resort()
        if widest != self._index_width:  # the index column widened: every cached line is laid out anew
            self._index_width = widest
            self._clear_cache()
        if was_empty:
            self._cursor = len(self._keys) - 1 if self.start_at_end else 0
        elif added and following:
            self._cursor = len(self._keys) - 1
        elif self._selected_index in self._rows:
            self._cursor = self._position_of(self._selected_index)
        self._after_change(scroll=was_empty or (added and following))

    def select_index(self, experiment_index: int) -> bool:
        """Put the cursor on an experiment (scrolling it into view); False if the table has no such experiment."""
        if experiment_index not in self._rows:
            return False
        self._move_cursor(self._position_of(experiment_index))
        return True

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort by one of :data:`SORT_CYCLE`; the selected experiment stays selected (and in view)."""
        if column not in SORT_CYCLE:
            raise ValueError(f"cannot sort by {column!r}: one of {', '.join(SORT_CYCLE)}")
        self._sort_column, self._sort_reverse = column, reverse
        self._resort()
        if self._selected_index in self._rows:
            self._cursor = self._position_of(self._selected_index)
        self._after_change(scroll=True)

    # -- actions --------------------------------------------------------------------------------------
    def action_cursor_up(self) -> None:
        """One row up."""
        self._move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        """One row down."""
        self._move_cursor(self._cursor + 1)

    def action_cursor_page_up(self) -> None:
        """One screen up."""
        self._move_cursor(self._cursor - self._body_height())

    def action_cursor_page_down(self) -> None:
        """One screen down."""
        self._move_cursor(self._cursor + self._body_height())

    def action_cursor_first(self) -> None:
        """To the first row."""
        self._move_cursor(0)

    def action_cursor_last(self) -> None:
        """To the last row."""
        self._move_cursor(len(self._keys) - 1)

    def action_cycle_sort(self) -> None:
        """Sort by the next column of :data:`SORT_CYCLE` (ascending)."""
        at = SORT_CYCLE.index(self._sort_column)
        self.sort_by(SORT_CYCLE[(at + 1) % len(SORT_CYCLE)])

    def action_reverse_sort(self) -> None:
        """Flip the direction of the current sort."""
        self.sort_by(self._sort_column, not self._sort_reverse)

    # -- events ---------------------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        """A click on a row selects it; on a sortable header label it sorts (again: reverses)."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            self._click_header(offset.x)
        else:
            self._move_cursor(self.scroll_offset.y + offset.y - 1, clamp=False)

    def on_resize(self, event: events.Resize) -> None:
        """Keep the cursor in view at the new height."""
        self._scroll_to_cursor()

    def notify_style_update(self) -> None:
        """Theme, focus or CSS changed: every cached line is stale."""
        super().notify_style_update()
        self._clear_cache()
        self.refresh()

    # -- rendering ------------------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        """Render a frame's lines: the width and scroll position are looked up once, not per line."""
        self._frame = (self._content_width(), self.scroll_offset.y)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        """Line 0 is the header; the body line for screen line y > 0 is row ``scroll_y + y - 1``."""
        width, top = self._frame or (self._content_width(), self.scroll_offset.y)
        if y == 0:
            return self._header_strip(width)
        if not self._keys:
            return self._empty_strip(width) if y == 1 else Strip.blank(width, self.rich_style)
        position = top + y - 1
        if not 0 <= position < len(self._keys):
            return Strip.blank(width, self.rich_style)
        return self._row_strip(self._keys[position][-1], width, position == self._cursor)

    def _row_strip(self, index: int, width: int, selected: bool) -> Strip:
        """One experiment's line, from the cache or formatted now."""
        key = (index, width, selected)
        strip = self._cache.get(key)
        if strip is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._clear_cache()
            strip = self._format_row(self._rows[index], width, selected)
            self._cache[key] = strip
            self._cached_widths.add(width)
        return strip

    def _format_row(self, row: ExperimentRow, width: int, selected: bool) -> Strip:
        """Format one experiment: each cell fitted to its column and coloured by its component class."""
        base = self.rich_style + self.get_component_rich_style("history-table--cursor") if selected \
            else self.rich_style
        cells = []
        for placed in self._layout(width):
            text, component = cell(row, placed.column.key)
            style = base + self.get_component_rich_style(component, partial=True) if component else base
            cells.append((fit(text, placed.width, placed.column.align), style))
        return self._join_cells(cells, width, base)

    def _header_strip(self, width: int) -> Strip:
        """The header line: the column labels, the sort column's marked ▲ (ascending) or ▼."""
        key = (width, self._sort_column, self._sort_reverse, self._index_width)
        if self._header is not None and self._header[0] == key:
            return self._header[1]
        base = self.rich_style + self.get_component_rich_style("history-table--header")
        sort_style = base + self.get_component_rich_style("history-table--header-sort", partial=True)
        cells = []
        for placed in self._layout(width):
            column = placed.column
            if column.key == self._sort_column:
                label = column.label + ("▼" if self._sort_reverse else "▲")
                cells.append((fit(label, placed.width, column.align), sort_style))
            else:
                cells.append((fit(column.label, placed.width, column.align), base))
        strip = self._join_cells(cells, width, base)
        self._header = (key, strip)
        return strip

    def _empty_strip(self, width: int) -> Strip:
        """The line that says there is nothing to show yet."""
        style = self.rich_style + self.get_component_rich_style("history-table--empty", partial=True)
        text = fit(EMPTY_TEXT, max(0, width - LEAD))
        return self._join_cells([(text, style)], width, self.rich_style)

    def _join_cells(self, cells: list[tuple[str, Style]], width: int, base: Style) -> Strip:
        """Cells joined with the gap between columns, padded or cropped to exactly ``width`` cells."""
        segments = [Segment(" " * LEAD, base)]
        gap = Segment(" " * GAP, base)
        for i, (text, style) in enumerate(cells):
            if i:
                segments.append(gap)
            segments.append(Segment(text, style))
        return Strip(segments).adjust_cell_length(width, base)

    def _layout(self, width: int) -> tuple[Placed, ...]:
        """The columns at a width (memoised: a handful of widths are ever seen)."""
        key = (width, self._index_width)
        placed = self._layouts.get(key)
        if placed is None:
            if len(self._layouts) > 64:
                self._layouts.clear()
            placed = self._layouts[key] = layout(width, self._index_width)
        return placed

    # -- the model ------------------------------------------------------------------------------------
    def _key(self, row: ExperimentRow) -> SortKey:
        return sort_key(row, self._sort_column, self._sort_reverse)

    def _resort(self) -> None:
        """Sort every row by the current key (a full sort: on a load, a reset or a new sort column)."""
        self._keys = sorted(self._key(row) for row in self._rows.values())

    def _place(self, row: ExperimentRow, old: ExperimentRow | None) -> None:
        """Put a new or changed row where it sorts: append, or bisect out the old key and in the new one."""
        new_key = self._key(row)
        if old is not None:
            old_key = self._key(old)
            if old_key == new_key:
                return
            del self._keys[bisect_left(self._keys, old_key)]
        if not self._keys or new_key > self._keys[-1]:
            self._keys.append(new_key)
        else:
            insort(self._keys, new_key)

    def _position_of(self, experiment_index: int) -> int:
        """Where an experiment sorts now (a bisect on its key)."""
        return bisect_left(self._keys, self._key(self._rows[experiment_index]))

    def _at_end(self) -> bool:
        """Whether the cursor is on the last row (a non-empty table)."""
        return bool(self._keys) and self._cursor == len(self._keys) - 1

    # -- cursor and view ------------------------------------------------------------------------------
    def _move_cursor(self, position: int, *, clamp: bool = True) -> None:
        """Move the cursor to a body line (clamped into the table), keep it in view, say so if it moved."""
        if not self._keys:
            return
        if not clamp and not 0 <= position < len(self._keys):
            return
        position = max(0, min(position, len(self._keys) - 1))
        if position == self._cursor:
            return
        self._refresh_position(self._cursor)
        self._cursor = position
        self._refresh_position(position)
        self._scroll_to_cursor()
        self._sync_selection()

    def _after_change(self, *, scroll: bool) -> None:
        """After the rows or their order changed: clamp the cursor, resize, repaint, announce a new selection."""
        self._cursor = max(0, min(self._cursor, len(self._keys) - 1))
        self.virtual_size = Size(0, len(self._keys) + 1)
        if scroll:
            self._scroll_to_cursor()
            self.call_after_refresh(self._settle_scroll)
        self.refresh()
        self._sync_selection()

    def _sync_selection(self) -> None:
        """Post :class:`Selected` when the experiment under the cursor is another one than before."""
        index = self._keys[self._cursor][-1] if self._keys else None
        if index == self._selected_index:
            return
        self._selected_index = index
        if index is not None:
            self.post_message(self.Selected(self, self._rows[index]))

    def _content_width(self) -> int:
        """The width the lines are drawn in (the widget's, less the vertical scrollbar)."""
        return self.scrollable_content_region.width

    def _body_height(self) -> int:
        """How many rows fit under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        """Scroll the least that brings the cursor's row into view."""
        if not self._keys or not self.scrollable_content_region.height:
            return
        top, body = self.scroll_offset.y, self._body_height()
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, force=True)
        elif self._cursor >= top + body:
            self.scroll_to(y=self._cursor - body + 1, animate=False, force=True)

    def _settle_scroll(self) -> None:
        """Once the new size is laid out: the cursor in view again, and the scrollbar where the view is (a
        scrollbar that appears with the new rows would otherwise keep the position it had when hidden)."""
        self._scroll_to_cursor()
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.position = self.scroll_y

    def _refresh_position(self, position: int) -> None:
        """Repaint one body line (if it is on screen)."""
        y = position - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh_line(position + 1)

    def _click_header(self, x: int) -> None:
        """Sort by the column under ``x`` if it is one of the sort columns (a second click reverses)."""
        for placed in self._layout(self._content_width()):
            if placed.x <= x < placed.x + placed.width and placed.column.key in SORT_CYCLE:
                key = placed.column.key
                self.sort_by(key, not self._sort_reverse if key == self._sort_column else False)
                return

    # -- the line cache -------------------------------------------------------------------------------
    def _invalidate(self, index: int) -> None:
        """Drop one experiment's cached lines (at every width seen, selected or not)."""
        for width in self._cached_widths:
            self._cache.pop((index, width, False), None)
            self._cache.pop((index, width, True), None)

    def _clear_cache(self) -> None:
        """Forget every cached line."""
        self._cache.clear()
        self._cached_widths.clear()
        self._header = None
