"""`n` on the dashboard: the steering notes in force, a new one (Enter), removing one (Delete)."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ...engine import notes as notes_mod
from ...engine.experiments import Note
from ...engine.rundir import RunDir, RunError
from .. import keys
from . import run_config


class NotesRead(Message):
    def __init__(self, notes: list[Note], said: str = "", error: bool = False) -> None:
        super().__init__()
        self.notes = notes
        self.said = said
        self.error = error


class NotesDialog(ModalScreen[None]):
    BINDINGS = keys.NOTES

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.notes: list[Note] = []

    def compose(self) -> ComposeResult:
        agent = (run_config(self.run).get("agent") or "")
        hint = ("The researcher reads these from its next proposal on, until you remove them."
                if notes_mod.reads_notes(agent) else
                f"This run's agent ({agent}) searches numbers: it ignores notes (an LLM agent reads them).")
        with Vertical(id="dialog", classes="form"):
            yield Static(Text("Notes to the researcher", style="bold"), id="dialog-title")
            yield Static(Text(hint, style="dim"))
            yield OptionList(id="notes")
            yield Input(placeholder="a new note, e.g. try a smaller batch (Enter adds it)", id="note")
            yield Static(id="problem")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()
        self._refresh()

    @work(thread=True, exclusive=True, group="notes")
    def _refresh(self, said: str = "") -> None:
        self._post_notes(said)

    def on_notes_read(self, message: NotesRead) -> None:
        self.notes = message.notes
        options = self.query_one("#notes", OptionList)
        options.clear_options()
        options.add_options([Option(Text.assemble((f"{i}. ", "bold"), n.text, (f"  {(n.ts or '')[11:16]}", "dim")),
                                    id=n.id) for i, n in enumerate(self.notes, 1)] or
                            [Option(Text("no notes yet", style="dim"), disabled=True)])
        if self.notes:
            options.highlighted = len(self.notes) - 1  # the newest
        self.query_one("#problem", Static).update(Text(message.said, style="red" if message.error else "green"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            event.input.value = ""
            self._write(lambda: notes_mod.add(self.run, text), "note added")

    def action_remove_note(self) -> None:
        options = self.query_one("#notes", OptionList)
        if options.highlighted is None or not self.notes or options.highlighted >= len(self.notes):
            self.notify("move to a note in the list first (Tab), then Delete", severity="warning")
            return
        note_id = self.notes[options.highlighted].id
        self._write(lambda: notes_mod.remove(self.run, note_id), "note removed")

    @work(thread=True, exclusive=True, group="write")
    def _write(self, change: Callable[[], object], said: str) -> None:
        """Add or remove a note (a ledger append), then show the notes as they are now."""
        try:
            change()
        except (RunError, OSError) as e:
            self.post_message(NotesRead(self.notes, str(e), error=True))
            return
        self._post_notes(said)

    def _post_notes(self, said: str) -> None:
        """From a worker: read the notes again (and post them)."""
        try:
            self.post_message(NotesRead(notes_mod.notes(self.run), said))
        except (RunError, OSError) as e:
            self.post_message(NotesRead([], str(e), error=True))
