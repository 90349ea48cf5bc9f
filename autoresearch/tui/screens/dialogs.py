"""Small screens: quit (leave the run going or stop it), confirm, the live keys, an unreadable run."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Static


class QuitDialog(ModalScreen[str]):
    """Returns "leave" (the engine keeps running), "stop" (stop it after this experiment) or "cancel"."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel", id="quit.cancel"),
                Binding("l", "dismiss('leave')", "Leave it running", id="quit.leave", show=False),
                Binding("s", "dismiss('stop')", "Stop after this experiment", id="quit.stop", show=False)]

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Quit the app?\n\n", "bold"),
                                       f"The engine of {self.tag} runs on its own: leaving it going is the default; "
                                       "`autoresearch watch` comes back to it."), id="dialog-text")
            with Horizontal(id="dialog-buttons"):
                yield Button("Leave it running (l)", id="leave", variant="primary")
                yield Button("Stop after this experiment (s)", id="stop", variant="warning")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel", id="confirm.cancel"),
                Binding("y", "dismiss(True)", "Yes", id="confirm.yes", show=False)]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="dialog-text")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("Cancel", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class KeysScreen(ModalScreen[None]):
    """`?`: the bindings live on the screen underneath, with their ids (what `[tui.keymap]` remaps)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="keys.close")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(title="Keys here (remap them by id in [tui.keymap] of the config)", expand=True)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("what")
        table.add_column("id", style="dim", no_wrap=True)
        for key, description, binding_id in self.rows:
            table.add_row(key, description, binding_id)
        with VerticalScroll(id="keys"):
            yield Static(table)
        yield Footer()


class ErrorScreen(Screen[None]):
    """A run that cannot be read (a corrupt ledger, a vanished directory): the message and what to do."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="error.back")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error"):
            yield Static(Text(self.title_text, style="bold red"), id="error-title")
            yield Static(Text(self.message), id="error-message")
        yield Footer()
