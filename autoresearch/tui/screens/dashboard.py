"""The dashboard of one run: history, diff, progress plot, live log, status; steering by key and palette.

Everything shown comes from the run directory through the poller thread (the same read model `status`
uses); everything done goes through the control queue or the detached launcher. The screen never runs
the loop and never writes the ledger.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SuspendNotSupported
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Grid
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from ...engine import control
from ...engine.diffs import ExperimentDiff, experiment_diff
from ...engine.launch import LaunchError, launch_detached
from ...engine.live import ENGINE_LOG
from ...engine.rundir import RunDir
from ...engine.stall import stall_words
from ...engine.view import ExperimentRow, RunState
from .. import keys
from ..poller import RunUpdated, poll_run
from ..widgets.diff import DiffView
from ..widgets.history import HistoryTable
from ..widgets.logview import LogView
from ..widgets.plot import ProgressPlot
from ..widgets.statusbar import StatusBar
from . import run_config
from .dialogs import ConfirmDialog, ErrorScreen

NARROW_WIDTH = 110  # below this (or 30 lines) the panes take turns under the table
NARROW_HEIGHT = 30
PANES = ("log", "diff", "plot")


class DiffLoaded(Message):
    def __init__(self, row: ExperimentRow, diff: ExperimentDiff) -> None:
        super().__init__()
        self.row = row
        self.diff = diff


class Notice(Message):
    """A line for the user from a worker thread (workers post messages; they never call into widgets)."""

    def __init__(self, text: str, severity: str = "information", timeout: float = 5.0) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.timeout = timeout


class RunCommands(Provider):
    """Command palette entries for what can be done to this run now (pause or resume, not both)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        screen = self.screen
        return screen.commands_now() if isinstance(screen, Dashboard) else []

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


class Dashboard(Screen[None]):
    BINDINGS = keys.DASHBOARD
    COMMANDS = {RunCommands}

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.state: RunState | None = None
        self.rows: dict[int, ExperimentRow] = {}
        self.pane = "log"
        self.log_source = "training"  # or "engine"
        self._log_path: Path | None = None
        self._sent: dict[str, str] = {}  # control id -> command, until the engine takes it
        self._plot_dirty = False
        self._diff_for: int | None = None
        self._error_shown = False

    # -- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="runline")
        yield Static(id="notes-line")
        yield Static(id="banner")
        with Grid(id="body"):
            yield HistoryTable(id="history")
            yield ProgressPlot(id="plot", classes="pane")
            yield DiffView(id="diff", classes="pane")
            yield LogView(id="log", classes="pane")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        cfg = run_config(self.run)
        prof = cfg.get("profile") or {}
        self.query_one("#runline", Static).update(Text.assemble(
            ("autoresearch ", "bold"), (f"{self.run.tag}", "bold cyan"),
            (f"  ·  {prof.get('name', '?')} profile, {cfg.get('backend', '?')} on {prof.get('device', '?')}, "
             f"{prof.get('time_budget', 0):.0f}s per experiment  ·  data {cfg.get('dataset', '?')}  ·  "
             f"policy {cfg.get('policy', '?')}  ·  agent {cfg.get('agent') or 'none'}", "dim")))
        self.query_one("#banner", Static).display = False
        self.query_one("#notes-line", Static).display = False
        self._layout(self.size.width, self.size.height)
        self.query_one("#history", HistoryTable).focus()
        self.set_interval(1.0, self._tick)
        self._watch_run()

    def on_resize(self, event: object) -> None:
        self._layout(self.size.width, self.size.height)

    def _layout(self, width: int, height: int) -> None:
        narrow = width < NARROW_WIDTH or height < NARROW_HEIGHT
        self.set_class(narrow, "narrow")
        for name in PANES:
            self.query_one(f"#{name}").set_class(name == self.pane, "shown")

    # -- the poller -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="poller")
    def _watch_run(self) -> None:
        worker = get_current_worker()
        app = self.app
        poll_run(self.run, self.post_message, lambda: worker.is_cancelled, interval=getattr(app, "poll_interval", 0.25),
                 clock=getattr(app, "clock", time.time), sampler=getattr(app, "load_sampler", lambda: None)())

    def on_run_updated(self, message: RunUpdated) -> None:
        if message.provisional:  # results.tsv while the ledger is read: the table now, the rest in a moment
            self.rows = {r.index: r for r in message.rows}
            self.query_one("#history", HistoryTable).set_rows(message.rows)
            self.query_one("#diff", DiffView).show(None, None)
            self.query_one("#status", StatusBar).update(Text(f"reading the run's ledger ({len(message.rows):,} "
                                                             "experiments)…", style="dim"))
            return
        state = message.state
        self.state = state
        if state.error:
            self._show_error(state.error)
            return
        self._error_shown = False
        table = self.query_one("#history", HistoryTable)
        if message.reset:
            self.rows = {r.index: r for r in message.rows}
            table.set_rows(message.rows)
        elif message.rows:
            self.rows.update({r.index: r for r in message.rows})
            table.update_rows(message.rows)
        if message.rows or message.reset:
            self._plot_dirty = True
            if table.selected is None and self.rows:
                table.select_index(max(self.rows))
            sel = table.selected
            if sel is not None and any(r.index == sel.index for r in message.rows):
                self._load_diff(sel)
        self.query_one("#status", StatusBar).show(state, message.load, message.now, message.remaining)
        self._follow_log(state)
        self._banner(state)
        self._notes_line(state)
        self._report_taken(state)

    def _tick(self) -> None:
        self.query_one("#status", StatusBar).tick()
        if self._plot_dirty:
            self._plot_dirty = False
            self.query_one("#plot", ProgressPlot).show(self.rows.values(), self.state.noise_sigma if self.state else None)

    def _follow_log(self, state: RunState) -> None:
        if self.log_source == "engine":
            path: Path | None = self.run.state / ENGINE_LOG
            title = "engine.log (e: training log)"
        elif state.current is not None:
            path = state.current.log
            title = f"training log of exp {state.current.index} ({state.current.purpose}) — e: engine log"
        else:
            path = self._log_path or self._latest_log()
            title = f"last training log: {path.name} — e: engine log" if path else "training log — e: engine log"
        if path != self._log_path:
            self._log_path = path
            self.query_one("#log", LogView).follow_file(path, title)

    def _latest_log(self) -> Path | None:
        logs = sorted((self.run.state / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime) \
            if (self.run.state / "logs").is_dir() else []
        return logs[-1] if logs else None

    def _banner(self, state: RunState) -> None:
        banner = self.query_one("#banner", Static)
        if state.engine.alive:
            banner.display = state.stalled_since is not None
            if banner.display:  # alive but stuck: the engine's watchdog said so (engine.stall)
                banner.set_class(False, "-stopped")
                words = stall_words(time.time() - state.stalled_since, state.stall_doing, self.run.tag, state.engine.pid)
                head, _, rest = words.partition(": ")
                banner.update(Text.assemble((head, "bold"), f": {rest}"))
            return
        since = state.engine.dead_since
        when = time.strftime("%H:%M", time.localtime(since)) if since else "?"
        banner.set_class(state.engine.stopped_cleanly, "-stopped")
        if state.engine.stopped_cleanly:  # a limit reached, a stop asked for: not a failure
            text = Text.assemble(("stopped", "bold"), f" at {when}: {state.engine.stop_reason[:200]}")
            hint = getattr(self.app, "stopped_hint", "")
            if hint:
                text.append(f"\n{hint}", style="bold green")
            text.append("\nresearch on: ").append(f"autoresearch run --tag {self.run.tag}", style="bold")
        else:
            text = Text.assemble(("engine not running", "bold"), f" since {when}")
            last = state.engine.stop_reason or state.engine.last_message
            if last:
                text.append(f" (last message: {last[:160]})")
            text.append("\nresume it: ").append(f"autoresearch run --tag {self.run.tag}", style="bold")
        text.append(" (or press R here)")
        banner.update(text)
        banner.display = True

    def _notes_line(self, state: RunState) -> None:
        line = self.query_one("#notes-line", Static)
        line.display = bool(state.notes)
        if state.notes:
            line.update(Text.assemble(("notes: ", "bold yellow"), " · ".join(state.notes.values()),
                                      ("  (n: edit)", "dim")))

    def _show_error(self, error: str) -> None:
        if self._error_shown:
            return
        self._error_shown = True
        fix = ""
        if "damaged in the middle" in error or "not a valid JSON event" in error:
            fix = ("\n\nThe run's ledger (.autoresearch/events.jsonl) has a damaged line. Move that line out to a file "
                   "of its own (keep it), then watch the run again. Nothing else is lost.")
        elif "is gone" in error:
            fix = "\n\nIf it was moved, open it from its new place: autoresearch watch PATH"
        self.app.push_screen(ErrorScreen(f"run {self.run.tag} cannot be read", error + fix))

    def _report_taken(self, state: RunState) -> None:
        for cid in [c for c in self._sent if c in state.taken]:
            command = self._sent.pop(cid)
            outcome = state.taken[cid]
            self.notify(f"{command}: {'taken' if outcome == 'done' else outcome}",
                        severity="information" if outcome == "done" else "warning")

    # -- diff -----------------------------------------------------------------------------------------
    def on_history_table_selected(self, message: HistoryTable.Selected) -> None:
        self._load_diff(message.row)

    def _load_diff(self, row: ExperimentRow) -> None:
        self._diff_for = row.index
        self.query_one("#diff", DiffView).show(row, None)
        self._compute_diff(row)

    @work(thread=True, exclusive=True, group="diff")
    def _compute_diff(self, row: ExperimentRow) -> None:
        time.sleep(0.05)  # keys held down: only the row the cursor stops on is read
        if get_current_worker().is_cancelled:
            return
        self.post_message(DiffLoaded(row, experiment_diff(self.run, row.commit, row.parent)))

    def on_diff_loaded(self, message: DiffLoaded) -> None:
        if message.row.index == self._diff_for:
            self.query_one("#diff", DiffView).show(message.row, message.diff)

    # -- what can be done now -------------------------------------------------------------------------
    def commands_now(self) -> list[tuple[str, str, Callable[[], object]]]:
        st = self.state
        out: list[tuple[str, str, Callable[[], object]]] = []
        if st is not None and st.engine.alive:
            if st.paused:
                out.append(("Resume the run", "the engine continues with the next experiment", self.action_toggle_pause))
            else:
                out.append(("Pause after this experiment", "the current experiment finishes first",
                            self.action_toggle_pause))
            out.append(("Stop after this experiment", "the engine exits when the current experiment has an outcome",
                        self.action_stop_after))
            out.append(("Stop now", "the current experiment is recorded as interrupted and reverted", self.action_stop_now))
            if st.current is not None:
                out.append((f"Skip experiment {st.current.index}", "abandon it (recorded as interrupted) and go on",
                            self.action_skip))
        elif st is not None and not st.error:
            out.append(("Resume the engine", f"start it again in the background: autoresearch run --tag {self.run.tag}",
                        self.action_resume_engine))
        if self._log_path is not None:
            out.append(("Open the log in $PAGER", str(self._log_path), self.action_open_pager))
        row = self.query_one("#history", HistoryTable).selected
        if row is not None and row.commit:
            out.append((f"Copy the commit of experiment {row.index}", row.commit, self.action_copy_commit))
        out.append(("Review the kept changes", "r: accept / reject, export, revert, re-test", self.action_open_review))
        out.append(("Notes to the researcher", "n: steer the agent of this run", self.action_notes))
        out.append(("Diff: unified / side by side", "u", self.action_toggle_split))
        out.append(("Back to the runs", "escape", self.action_back))
        return out

    # -- actions --------------------------------------------------------------------------------------
    def _send(self, command: str) -> None:
        try:
            msg = control.send(self.run.state, command)
        except control.ControlError as e:
            self.notify(str(e), severity="error")
            return
        self._sent[msg["id"]] = command
        self.notify(f"{command} sent to {self.run.tag}")

    def _alive(self) -> bool:
        if self.state is None or not self.state.engine.alive:
            self.notify("the engine is not running (R starts it again)", severity="warning")
            return False
        return True

    def action_toggle_pause(self) -> None:
        if self._alive():
            self._send("resume" if self.state and self.state.paused else "pause")

    def action_stop_after(self) -> None:
        if self._alive():
            self._send("stop")

    def action_stop_now(self) -> None:
        if not self._alive():
            return

        def done(yes: bool | None) -> None:
            if yes:
                self._send("stop-now")

        self.app.push_screen(ConfirmDialog("Stop now? The current experiment is recorded as interrupted and its "
                                           "change reverted.", "Stop now"), done)

    def action_skip(self) -> None:
        if not self._alive():
            return
        if self.state is None or self.state.current is None:
            self.notify("no training is running to skip", severity="warning")
            return
        index = self.state.current.index

        def done(yes: bool | None) -> None:
            if yes:
                self._send("skip")

        self.app.push_screen(ConfirmDialog(f"Skip experiment {index}? It is recorded as interrupted and the engine "
                                           "goes on with the next one.", "Skip"), done)

    def action_resume_engine(self) -> None:
        if self.state is not None and self.state.engine.alive:
            self.notify("the engine is running")
            return
        self.notify(f"starting the engine of {self.run.tag}…")
        self._launch()

    @work(thread=True, exclusive=True, group="launch")
    def _launch(self) -> None:
        try:
            pid = launch_detached(self.run)
        except LaunchError as e:
            self.post_message(Notice(str(e), "error", 20))
        else:
            self.post_message(Notice(f"engine running (pid {pid})"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity, timeout=message.timeout)  # type: ignore[arg-type]

    def action_toggle_split(self) -> None:
        mode = self.query_one("#diff", DiffView).toggle_mode()
        self.notify(f"diff: {mode}", timeout=2)

    def action_toggle_log(self) -> None:
        self.log_source = "engine" if self.log_source == "training" else "training"
        self._log_path = None
        if self.state is not None:
            self._follow_log(self.state)
        if self.has_class("narrow"):
            self.pane = "log"
            self._layout(self.size.width, self.size.height)

    def action_open_pager(self) -> None:
        path = self._log_path
        if path is None or not path.exists():
            self.notify("no log to open yet", severity="warning")
            return
        pager = os.environ.get("PAGER") or ("less" if shutil.which("less") else "")
        if not pager:
            self.notify("set $PAGER (no `less` found)", severity="warning")
            return
        argv = shlex.split(pager) + (["+G", "-R"] if Path(shlex.split(pager)[0]).name == "less" else []) + [str(path)]
        try:
            with self.app.suspend():
                subprocess.run(argv)
        except SuspendNotSupported:  # a browser (watch --serve) or a test driver cannot hand the terminal over
            self.notify(f"the log cannot be opened in a pager here: {path}", severity="warning", timeout=10)
        except OSError as e:
            self.notify(f"cannot run {argv[0]}: {e}", severity="error")

    def action_copy_commit(self) -> None:
        row = self.query_one("#history", HistoryTable).selected
        if row is None or not row.commit:
            self.notify("select an experiment first", severity="warning")
            return
        self.app.copy_to_clipboard(row.commit)
        self.notify(f"copied {row.commit[:12]} (experiment {row.index})")

    def action_next_pane(self) -> None:
        if self.has_class("narrow"):
            self.pane = PANES[(PANES.index(self.pane) + 1) % len(PANES)]
            self._layout(self.size.width, self.size.height)
        else:
            self.focus_next()

    def action_open_review(self) -> None:
        from .review import ReviewScreen

        self.app.push_screen(ReviewScreen(self.run))

    def action_notes(self) -> None:
        from .notes import NotesDialog

        self.app.push_screen(NotesDialog(self.run))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.action_open_picker()  # type: ignore[attr-defined]
