"""The autoresearch app: a run picker, a dashboard per run, the dialogs around them.

The app is a client of run directories, like `autoresearch status`: it reads them through the engine's
read model (in a worker thread that only posts messages), steers through the control queue, and starts
engines as detached processes. Quitting it never stops a run unless asked to.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from .. import paths
from ..engine import control
from ..engine.rundir import RunDir
from ..engine.sysload import LoadSampler
from . import keys
from .screens.dashboard import Dashboard
from .screens.dialogs import KeysScreen, QuitDialog
from .screens.setup import SetupScreen
from .screens.picker import RunPicker
from .widgets.history import HistoryTable
from .widgets.logview import LogView


class ResearchApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "autoresearch"
    BINDINGS = keys.APP
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, runs_dir: Path, run: Path | None = None, *, keymap: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time, load_sampler: Callable[[], LoadSampler | None] | None = None,
                 poll_interval: float = 0.25, debug: bool = False, review: bool = False, stopped_hint: str = "") -> None:
        super().__init__()
        self.initial_review = review
        self.stopped_hint = stopped_hint  # said on the dashboard once its run has stopped (the demo: what q does)
        self.runs_dir = Path(runs_dir)
        self.initial_run = run
        self.user_keymap = dict(keymap or {})
        self.clock = clock
        self.load_sampler = load_sampler or LoadSampler
        self.poll_interval = poll_interval
        self.debug_mode = debug
        self.keymap_problems: list[str] = []

    # -- start ----------------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[None]:
        return RunPicker(self.runs_dir)

    def on_mount(self) -> None:
        problems = keys.check_keymap(self.user_keymap, self.binding_scopes())
        self.keymap_problems = [p.message for p in problems]
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        for text in self.keymap_problems:
            self.notify(text, severity="warning", timeout=15)
        if self.initial_run is not None:
            self.open_run(self.initial_run)
            if self.initial_review:
                from .screens.review import ReviewScreen

                self.push_screen(ReviewScreen(RunDir(self.initial_run)))

    @staticmethod
    def binding_scopes() -> dict[str, list[Binding]]:
        """The bindings active together: the app's and a screen's, plus those of the focused widget."""
        def only(bindings: list) -> list[Binding]:  # type: ignore[type-arg]
            return [b for b in bindings if isinstance(b, Binding)]

        dashboard = only(keys.APP + keys.DASHBOARD)
        return {"the run picker": only(keys.APP + keys.PICKER), "the review": only(keys.APP + keys.REVIEW),
                "the dashboard's table": dashboard + only(list(HistoryTable.BINDINGS)),
                "the dashboard's log": dashboard + only(list(LogView.BINDINGS))}

    # -- navigation -----------------------------------------------------------------------------------
    def open_run(self, path: Path) -> None:
        run = RunDir(path)
        while isinstance(self.screen, Dashboard):
            self.pop_screen()
        self.push_screen(Dashboard(run))

    def action_open_picker(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_new_run(self) -> None:
        def opened(path: Path | None) -> None:
            if path is not None:
                self.open_run(path)

        self.push_screen(SetupScreen(self.runs_dir), opened)

    def action_show_keys(self) -> None:
        rows = []
        for key, active in sorted(self.screen.active_bindings.items()):
            binding = active.binding
            rows.append((self.get_key_display(binding), binding.description or binding.action, binding.id or ""))
        self.push_screen(KeysScreen(rows))

    def action_request_quit(self) -> None:
        screen = self.screen
        state = screen.state if isinstance(screen, Dashboard) else None
        if state is None or not state.engine.alive:
            self.exit()
            return

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                control.send(screen.run.state, "stop")  # type: ignore[union-attr]
                self.exit(message=f"{screen.run.tag} will stop after the current experiment")  # type: ignore[union-attr]
            elif choice == "leave":
                self.exit(message=f"{screen.run.tag} keeps running: `autoresearch watch {screen.run.tag}` comes back to it")  # type: ignore[union-attr]

        self.push_screen(QuitDialog(screen.run.tag), chosen)

    # -- errors ---------------------------------------------------------------------------------------
    def handle_bindings_clash(self, clashed_bindings: set[Binding], node: object) -> None:
        for b in clashed_bindings:
            text = f"[tui.keymap]: {b.key!r} clashes with another binding ({b.id or b.action})"
            if text not in self.keymap_problems:
                self.keymap_problems.append(text)
                self.notify(text, severity="warning", timeout=15)

    def _fatal_error(self) -> None:
        """An unexpected error: one clear message and where the traceback went, unless --debug."""
        if self.debug_mode:
            super()._fatal_error()
            return
        log = paths.cache_dir() / "app-errors.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{traceback.format_exc()}\n")
        except OSError:
            pass
        kind, value = sys.exc_info()[:2]
        self._exit_renderables.append(Text(
            f"autoresearch app: unexpected error: {kind.__name__ if kind else 'error'}: {value}\n"
            f"The full traceback is in {log}; `autoresearch --debug watch` shows it here. "
            "A run's engine is a process of its own: it is not affected.", style="red"))
        self._close_messages_no_wait()
