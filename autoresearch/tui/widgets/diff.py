"""The selected experiment's change to train.py: unified (default) or side by side when there is room.

difflib (through :mod:`autoresearch.engine.diffs`) and Rich's Syntax; no diff widget dependency.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...engine.diffs import ExperimentDiff, side_by_side
from ...engine.view import ExperimentRow

SPLIT_MIN_WIDTH = 150  # columns at which "auto" shows the two sides next to each other

_STYLES = {"delete": "on #3a1618", "insert": "on #12321c", "replace": "on #2e2a12"}


def header(row: ExperimentRow, diff: ExperimentDiff) -> Text:
    text = Text()
    text.append(f"exp {row.index}", style="bold").append(f"  {row.commit[:7]}", style="cyan")
    if diff.parent:
        text.append(f" vs {diff.parent[:7]}", style="dim")
        text.append(f"  +{diff.added}", style="green").append(f" −{diff.removed}", style="red")
    text.append(f"  {row.status}", style="bold")
    text.append(f"\n{row.description}")
    if row.reason and row.status not in ("keep", "discard"):
        text.append(f"\n{row.reason}", style="red")
    elif row.reason and row.status == "discard" and row.val_bpb is None:  # stopped early: why there is no score
        text.append(f"\n{row.reason}", style="yellow")
    return text


def unified(diff: ExperimentDiff) -> RenderableType:
    if not diff.unified:
        return Text("no change to train.py", style="dim")
    return Syntax(diff.unified, "diff", theme="ansi_dark", word_wrap=False, background_color="default")


def split(diff: ExperimentDiff) -> RenderableType:
    rows = side_by_side(diff.old, diff.new)
    if not rows:
        return Text("no change to train.py", style="dim")
    table = Table.grid(expand=True, padding=(0, 1))
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    for r in rows:
        if r.kind == "gap":
            table.add_row(Text("⋯", style="dim"), Text("⋯", style="dim"))
            continue
        style = _STYLES.get(r.kind, "")
        table.add_row(_side(r.left, style if r.kind != "insert" else ""), _side(r.right, style if r.kind != "delete" else ""))
    return table


def _side(cell: tuple[int, str] | None, style: str) -> Text:
    if cell is None:
        return Text("")
    number, line = cell
    return Text.assemble((f"{number:>4} ", "dim"), (line.expandtabs(4), style))


class DiffView(VerticalScroll, can_focus=True):
    """Scrollable; ``show(row, diff)``; ``mode`` is unified, split or auto (split when wide)."""

    DEFAULT_CSS = """
    DiffView { border: round $panel-lighten-2; border-title-color: $text-muted; }
    DiffView:focus { border: round $accent; }
    DiffView > Static { width: auto; min-width: 100%; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.mode = "auto"
        self.border_title = "diff"
        self._row: ExperimentRow | None = None
        self._diff: ExperimentDiff | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(Text("select an experiment", style="dim"), id="diff-body")

    def show(self, row: ExperimentRow | None, diff: ExperimentDiff | None) -> None:
        self._row, self._diff = row, diff
        self._render_diff()
        self.scroll_home(animate=False)

    def toggle_mode(self) -> str:
        self.mode = {"auto": "unified" if self._is_split() else "split", "unified": "split", "split": "unified"}[self.mode]
        self._render_diff()
        return self.mode

    def _is_split(self) -> bool:
        return self.mode == "split" or (self.mode == "auto" and self.size.width >= SPLIT_MIN_WIDTH)

    def on_resize(self) -> None:
        if self.mode == "auto":
            self._render_diff()

    def _render_diff(self) -> None:
        body = self.query_one("#diff-body", Static)
        row, diff = self._row, self._diff
        if row is None:
            body.update(Text("select an experiment", style="dim"))
            return
        if diff is None:
            body.update(Group(header(row, _EMPTY), Text("reading…", style="dim")))
            return
        if diff.error:
            body.update(Group(header(row, diff), Text(diff.error, style="red")))
            return
        if not diff.parent:
            self.border_title = f"train.py of exp {row.index} (the baseline)"
            code = Syntax(diff.new, "python", theme="ansi_dark", line_numbers=True, background_color="default")
            body.update(Group(header(row, diff), Text(""), code))
            return
        split_now = self._is_split()
        self.border_title = f"diff of exp {row.index} ({'side by side' if split_now else 'unified'}; u switches)"
        body.update(Group(header(row, diff), Text(""), split(diff) if split_now else unified(diff)))


_EMPTY = ExperimentDiff("", None, "", "", "", 0, 0)
