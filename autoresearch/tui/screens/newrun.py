"""A new run from the app: the profile's defaults with an agent that needs no LLM (the full setup screen, with
LLM choices and dataset downloads, is the next step of the app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from ... import config as config_mod
from ...engine.create import default_tag, hardware_summary, open_or_create
from ...engine.launch import launch_detached

AGENTS = [("search: Optuna TPE over the knobs (no LLM)", "search"), ("search:cmaes (no LLM)", "search:cmaes"),
          ("search:random (no LLM)", "search:random")]


class Planned(Message):
    def __init__(self, facts: dict[str, Any]) -> None:
        super().__init__()
        self.facts = facts


class Started(Message):
    def __init__(self, path: Path | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.error = error


class NewRunDialog(ModalScreen[Path | None]):
    """Returns the new run's directory (its engine already running), or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="newrun.cancel")]

    def __init__(self, runs_dir: Path) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.facts: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Static(Text("New run", style="bold"), id="dialog-title")
            yield Static(Text("looking at this machine…", style="dim"), id="machine")
            yield Label("name (tag)")
            yield Input(default_tag(self.runs_dir), id="tag")
            yield Label("dataset (prepared)")
            yield Select([], id="dataset", allow_blank=True, prompt="looking for prepared data…")
            yield Label("seconds of training per experiment")
            yield Input("", id="budget", type="number")
            yield Label("researcher")
            yield Select(AGENTS, id="agent", value="search", allow_blank=False)
            yield Static(id="problem")
            with Horizontal(id="dialog-buttons"):
                yield Button("Start", id="start", variant="primary", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._plan()

    @work(thread=True, exclusive=True, group="plan")
    def _plan(self) -> None:
        from ...hardware import detect, profile_for
        from ...harness.prepare import list_prepared

        settings = config_mod.load()
        hw = detect()
        profile = profile_for(hw, settings.profile_overrides)
        prepared = [(m.dataset, m.vocab_size) for _, m in list_prepared(settings.data_dir)]
        self.post_message(Planned({"hardware": hardware_summary(hw), "profile": profile, "prepared": prepared,
                                   "data_dir": settings.data_dir}))

    def on_planned(self, message: Planned) -> None:
        f = self.facts = message.facts
        profile = f["profile"]
        self.query_one("#machine", Static).update(Text.assemble(
            (f["hardware"], "bold"), "\n", f"profile {profile.name}: {profile.backend} on {profile.device}, "
            f"depth {profile.depth}, width {profile.width}, sequence {profile.seq_len}, vocab {profile.vocab_size}",
            ("\n" + profile.reason if profile.reason else "", "dim")))
        self.query_one("#budget", Input).value = f"{profile.time_budget:g}"
        options = [(f"{name} (vocab {vocab})", name) for name, vocab in f["prepared"] if vocab == profile.vocab_size]
        select = self.query_one("#dataset", Select)
        select.set_options(options)
        names = [v for _, v in options]
        if names:
            select.value = profile.dataset if profile.dataset in names else ("stdlib" if "stdlib" in names else names[0])
            self.query_one("#start", Button).disabled = False
            self.query_one("#problem", Static).update("")
        else:
            self.query_one("#problem", Static).update(Text(
                f"No dataset is prepared for vocab {profile.vocab_size} in {f['data_dir']}. In a shell: "
                f"`autoresearch prepare --dataset stdlib` (built in, no download), then open this again.", style="red"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        dataset = self.query_one("#dataset", Select).value
        try:
            budget = float(self.query_one("#budget", Input).value)
        except ValueError:
            self.query_one("#problem", Static).update(Text("the budget is a number of seconds", style="red"))
            return
        if budget <= 0:
            self.query_one("#problem", Static).update(Text("the budget must be more than 0 seconds", style="red"))
            return
        tag = self.query_one("#tag", Input).value.strip() or default_tag(self.runs_dir)
        agent = str(self.query_one("#agent", Select).value)
        event.button.disabled = True
        self.query_one("#problem", Static).update(Text(f"creating {tag} and starting its engine…", style="dim"))
        self._start(tag, str(dataset), budget, agent)

    @work(thread=True, exclusive=True, group="start")
    def _start(self, tag: str, dataset: str, budget: float, agent: str) -> None:
        settings = config_mod.load()
        try:
            run, _ = open_or_create(self.runs_dir, tag, dataset=dataset, budget=budget, agent=agent,
                                    profile_overrides=settings.profile_overrides, data_root=settings.data_dir)
            launch_detached(run)
        except Exception as e:  # shown in the dialog: the run may exist already, the data may be gone ...
            self.post_message(Started(None, f"{type(e).__name__}: {e}" if not str(e) else str(e)))
        else:
            self.post_message(Started(run.path))

    def on_started(self, message: Started) -> None:
        if message.path is not None:
            self.dismiss(message.path)
            return
        self.query_one("#problem", Static).update(Text(message.error, style="red"))
        self.query_one("#start", Button).disabled = False
