"""The run picker: the runs in the runs directory (running ones first) and "new run"."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from ...engine.runs import RunSummary, list_runs
from ...engine.view import RunView, format_age
from .. import keys

NEW_RUN = "+new"
_STATUS_STYLE = {"running": "bold green", "paused": "bold yellow", "stopped": "dim", "unreadable": "bold red"}


class RunsListed(Message):
    def __init__(self, runs: list[RunSummary], error: str = "") -> None:
        super().__init__()
        self.runs = runs
        self.error = error


class RunPicker(Screen[None]):
    BINDINGS = keys.PICKER

    def __init__(self, runs_dir: Path) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.runs: list[RunSummary] = []
        self._views: dict[Path, RunView] = {}  # one incremental view per run, kept across listings

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("autoresearch", "bold"), ("  runs in ", "dim"), (str(self.runs_dir), "cyan")),
                     id="picker-title")
        table: DataTable[Text] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="picker-help")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, key in (("run", "run"), ("state", "state"), ("phase", "phase"), ("experiments", "n"),
                           ("best val_bpb", "best"), ("gain", "gain"), ("last activity", "age"), ("data", "data"),
                           ("agent", "agent")):
            table.add_column(label, key=key)
        self.query_one("#picker-help", Static).update(Text(
            "enter opens a run · n starts a new one · a run keeps going when you quit: its engine runs on its own",
            style="dim"))
        table.focus()

    def on_screen_suspend(self) -> None:
        """Another screen is on top (a dashboard): stop reading the runs until this one is shown again."""
        self.workers.cancel_group(self, "runs")

    def on_screen_resume(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="runs")
    def _list_runs(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                self.post_message(RunsListed(list_runs(self.runs_dir, self._views)))
            except OSError as e:
                self.post_message(RunsListed([], f"cannot read {self.runs_dir}: {e}"))
            for _ in range(20):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)

    def on_runs_listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        table = self.query_one("#runs", DataTable)
        selected = self._selected_key()
        table.clear()
        now = getattr(self.app, "clock", time.time)()
        for r in message.runs:
            best = f"{r.best_val_bpb:.6f}" if r.best_val_bpb is not None else "-"
            gain = Text(f"{r.gain:+.6f}", style="green" if r.gain < 0 else "red") if r.gain else Text("-")
            age = format_age(now - r.last_activity) + " ago" if r.last_activity else "-"
            table.add_row(Text(r.tag, style="bold"), Text(r.status, style=_STATUS_STYLE.get(r.status, "")),
                          Text(r.phase if r.status in ("running", "paused") else "-"), Text(str(r.experiments)),
                          Text(best), gain, Text(age), Text(r.dataset or "-"), Text(r.agent or "-"), key=str(r.path))
        table.add_row(Text("+ new run", style="bold cyan"), *[Text("")] * 8, key=NEW_RUN)
        if selected is not None:
            try:
                table.move_cursor(row=table.get_row_index(selected))
            except Exception:  # the run went away
                pass
        help_text = message.error or ("no runs yet: press n (or enter on “+ new run”) to start one"
                                      if not message.runs else
                                      "enter opens a run · n starts a new one · a run keeps going when you quit: "
                                      "its engine runs on its own")
        self.query_one("#picker-help", Static).update(Text(help_text, style="red" if message.error else "dim"))

    def _selected_key(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(str(event.row_key.value))

    def action_open_run(self) -> None:
        key = self._selected_key()
        if key is not None:
            self._open(key)

    def _open(self, key: str) -> None:
        if key == NEW_RUN:
            self.action_new_run()
            return
        self.app.open_run(Path(key))  # type: ignore[attr-defined]

    def action_new_run(self) -> None:
        self.app.action_new_run()  # type: ignore[attr-defined]

    def action_refresh(self) -> None:
        self._list_runs()
