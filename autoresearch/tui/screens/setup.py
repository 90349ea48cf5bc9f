"""The evening: a new run without reading the README. What this machine is and what a run will do (with the
reasons), the settings (each editable), the data (prepared here with a progress bar), the researcher (see
:mod:`..widgets.researcher`). Start is enabled only when everything is there, and says what is missing until then;
it creates the run, launches its engine detached, and returns the run's directory (the app opens its dashboard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Select, Static

from ... import config as config_mod
from ...agent.choice import memory_for_llm
from ...engine.create import default_tag, hardware_summary, open_or_create
from ...engine.launch import launch_detached
from ..progress import PostingProgress, ProgressUpdate
from ..widgets.researcher import ResearcherPanel

ENGINE_OVERHEAD_S = 25.0  # start-up, scoring, the agent: what an experiment costs beyond its budget (CPU, roughly)


class Planned(Message):
    def __init__(self, facts: dict[str, Any]) -> None:
        super().__init__()
        self.facts = facts


class Prepared(Message):
    def __init__(self, name: str, tokens: int = 0, error: str = "") -> None:
        super().__init__()
        self.name = name
        self.tokens = tokens
        self.error = error


class Started(Message):
    def __init__(self, path: Path | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.error = error


def plan_facts() -> dict[str, Any]:
    """What the screen shows of this machine (in a worker: detection runs nvidia-smi and friends)."""
    from ...harness.prepare import list_prepared
    from ...hardware import detect, profile_for

    settings = config_mod.load()
    hw = detect()
    profile = profile_for(hw, settings.profile_overrides)
    prepared = {(m.dataset, m.vocab_size): m.split_tokens("train") for _, m in list_prepared(settings.data_dir)}
    return {"hardware": hw, "summary": hardware_summary(hw), "profile": profile, "prepared": prepared,
            "data_dir": settings.data_dir, "ollama_host": settings.ollama_host}


def machine_text(f: dict[str, Any]) -> Text:
    hw, p = f["hardware"], f["profile"]
    text = Text()
    if hw.cuda:
        text.append("GPU      ", "dim").append(f"{hw.cuda.name}, {hw.cuda.memory_gb:.0f} GB\n", "bold")
    elif hw.apple_chip:
        text.append("chip     ", "dim").append(f"{hw.apple_chip}, {hw.ram_gb:.0f} GB unified memory\n", "bold")
    else:
        text.append("GPU      ", "dim").append("none usable: training runs on the CPU\n", "bold")
    text.append("CPU      ", "dim").append(f"{hw.cpu_model}, {hw.cpu_cores} cores, {hw.ram_gb:.1f} GB RAM\n")
    text.append("profile  ", "dim").append(f"{p.name}: {p.backend} on {p.device}, {p.dtype}", "bold")
    if p.reason:
        text.append(f"  because {p.reason}", "dim")
    text.append("\nmodel    ", "dim").append(f"depth {p.depth}, width {p.width}, sequence {p.seq_len}, vocab {p.vocab_size}, "
                                            f"{p.total_batch_size:,} tokens per step")
    for note in hw.notes:
        text.append(f"\nnote     {note}", "yellow")
    return text


class SetupScreen(Screen[Path | None]):
    """Returns the new run's directory (its engine already running), or None."""

    BINDINGS = [Binding("ctrl+s", "start", "Start", id="setup.start"),
                Binding("escape", "dismiss(None)", "Cancel", id="setup.cancel")]

    def __init__(self, runs_dir: Path, *, planner: Callable[[], dict[str, Any]] = plan_facts) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.planner = planner
        self.facts: dict[str, Any] = {}
        self.preparing = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="setup"):
            yield Static(Text("New run", style="bold"), id="setup-title")
            yield Static(Text("looking at this machine…", style="dim"), id="machine")
            yield Static(Text("The run", style="bold"), classes="section")
            with Horizontal(classes="row"):
                with Vertical(classes="field"):
                    yield Label("name (tag)")
                    yield Input(default_tag(self.runs_dir), id="tag")
                with Vertical(classes="field"):
                    yield Label("training seconds each")
                    yield Input("", id="budget", type="number")
                with Vertical(classes="field"):
                    yield Label("backend")
                    yield Select([("torch", "torch")], id="backend", value="torch", allow_blank=False)
                with Vertical(classes="field"):
                    yield Label("keep a change when")
                    yield Select([("beats the noise", "noise"), ("lower at all (greedy)", "greedy")],
                                 id="policy", value="noise", allow_blank=False)
            yield Static(id="pace")
            yield Static(Text("The data", style="bold"), classes="section")
            with Horizontal(classes="row"):
                yield Select([], id="dataset", allow_blank=True, prompt="looking for prepared data…")
                yield Button("Prepare", id="prepare")
            yield Input(placeholder="or your own text: a .txt / .jsonl / .parquet file, or a folder of them",
                        id="dataset-path")
            yield ProgressBar(id="prepare-progress", show_eta=True)
            yield Static(id="dataset-status")
            yield Static(Text("The researcher", style="bold"), classes="section")
            yield ResearcherPanel(id="researcher")
            yield Static(id="problem")
            with Horizontal(id="dialog-buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", disabled=True)
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prepare-progress").display = False
        self.query_one("#prepare").display = False
        self.query_one("#tag", Input).focus()
        self._plan()

    @work(thread=True, exclusive=True, group="plan")
    def _plan(self) -> None:
        try:
            facts = self.planner()
        except Exception as e:  # a broken config: said on the screen
            self.post_message(Planned({"error": f"{type(e).__name__}: {e}"}))
            return
        self.post_message(Planned(facts))

    def on_planned(self, message: Planned) -> None:
        f = self.facts = message.facts
        if "error" in f:
            self.query_one("#machine", Static).update(Text(f["error"], style="red"))
            return
        hw, profile = f["hardware"], f["profile"]
        self.query_one("#machine", Static).update(machine_text(f))
        self.query_one("#budget", Input).value = f"{profile.time_budget:g}"
        backends = [("torch", "torch")] + ([("mlx", "mlx")] if hw.mlx_available else [])
        backend = self.query_one("#backend", Select)
        backend.set_options(backends)
        backend.value = profile.backend if profile.backend in dict(backends).values() else "torch"
        self._fill_datasets(profile.dataset if (profile.dataset, profile.vocab_size) in f["prepared"] else None)
        self.query_one(ResearcherPanel).start(f["ollama_host"], memory_for_llm(hw))
        self._check()

    # -- data -----------------------------------------------------------------------------------------
    def _fill_datasets(self, wanted: str | None = None) -> None:
        from ...harness.sources import DATASETS

        vocab = self.facts["profile"].vocab_size
        prepared = {name: tokens for (name, v), tokens in self.facts["prepared"].items() if v == vocab}
        names = list(DATASETS) + sorted(n for n in prepared if n not in DATASETS)
        options = []
        for name in names:
            kind = DATASETS[name].kind if name in DATASETS else ""
            state = (f"prepared, {prepared[name] / 1e6:.1f}M training tokens" if name in prepared else
                     "not prepared" + ("  (a download)" if kind == "hub" else "  (built in, no download)"))
            options.append((Text.assemble((name, "bold"), f"  {state}", style="" if name in prepared else "dim"), name))
        select = self.query_one("#dataset", Select)
        current = wanted or (select.value if isinstance(select.value, str) else None)
        if current not in prepared and prepared and wanted is None:
            current = next(iter(prepared))  # one that is ready beats the profile's choice that is not (said below)
        select.set_options(options)
        select.value = current if current in names else ("stdlib" if "stdlib" in names else names[0])
        self._dataset_status()

    def _prepared(self, name: str) -> bool:
        vocab = self.facts["profile"].vocab_size
        if self._is_path(name):
            from ...harness.manifest import DataError
            from ...harness.prepare import MANIFEST_NAME, dataset_dir

            try:
                return (dataset_dir(name, vocab, self.facts["data_dir"]) / MANIFEST_NAME).is_file()
            except DataError:
                return False
        return (name, vocab) in self.facts.get("prepared", {})

    def _is_path(self, name: str) -> bool:
        return bool(name) and name == self.query_one("#dataset-path", Input).value.strip()

    def _dataset(self) -> str:
        """The local path typed, else the dataset chosen."""
        path = self.query_one("#dataset-path", Input).value.strip()
        if path:
            return path
        value = self.query_one("#dataset", Select).value
        return value if isinstance(value, str) else ""

    def _dataset_status(self) -> None:
        name = self._dataset()
        status = self.query_one("#dataset-status", Static)
        ready = bool(name) and self._prepared(name)
        self.query_one("#prepare").display = bool(name) and not ready and not self.preparing
        if self.preparing:
            return
        profile = self.facts["profile"]
        if ready:
            hint = f" (this machine's profile suggests {profile.dataset})" if name != profile.dataset else ""
            status.update(Text(f"{name} is prepared in {self.facts['data_dir']}{hint}", style="dim"))
        elif name and self._is_path(name):
            exists = Path(name).expanduser().exists()
            status.update(Text(f"{name}: " + ("not prepared yet: Prepare tokenizes and shards it here" if exists else
                                              "no such file or folder"), style="yellow" if exists else "red"))
            self.query_one("#prepare").display = exists and not self.preparing
        elif name:
            offline = " Without a network, choose stdlib (built in)." if name != "stdlib" else ""
            from ...harness.sources import DATASETS

            what = DATASETS[name].description if name in DATASETS else name
            status.update(Text(f"{what}: not prepared for vocab {profile.vocab_size}. Prepare downloads it (if "
                               f"needed), tokenizes and shards it here.{offline}", style="yellow"))

    def _start_prepare(self) -> None:
        name = self._dataset()
        self.preparing = True
        self.query_one("#prepare").display = False
        bar = self.query_one("#prepare-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.query_one("#dataset-status", Static).update(Text(f"preparing {name}…", style="dim"))
        self._prepare(name, self.facts["profile"].vocab_size, self.facts["data_dir"])
        self._check()

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare(self, name: str, vocab: int, root: Path) -> None:
        from ...harness.manifest import DataError
        from ...harness.prepare import prepare

        try:
            done = prepare(name, vocab, root=root, progress=PostingProgress(self.post_message, "prepare"))
        except (DataError, OSError) as e:
            self.post_message(Prepared(name, error=str(e)))
        else:
            self.post_message(Prepared(name, done.manifest.split_tokens("train")))

    def on_progress_update(self, message: ProgressUpdate) -> None:
        if message.key != "prepare":
            return
        bar = self.query_one("#prepare-progress", ProgressBar)
        if message.what:
            bar.update(total=message.total, progress=message.done)
            self.query_one("#dataset-status", Static).update(Text(message.what, style="dim"))
        elif message.text:
            self.query_one("#dataset-status", Static).update(Text(message.text, style="dim"))

    def on_prepared(self, message: Prepared) -> None:
        self.preparing = False
        self.query_one("#prepare-progress").display = False
        if message.error:
            self.query_one("#dataset-status", Static).update(Text(
                f"{message.name} could not be prepared: {message.error}"
                + ("" if message.name == "stdlib" else "\nstdlib needs no network: choose it to start tonight."),
                style="red"))
            self.query_one("#prepare").display = True
        elif self._is_path(message.name):
            self._dataset_status()
        else:
            self.facts["prepared"][(message.name, self.facts["profile"].vocab_size)] = message.tokens
            self._fill_datasets(message.name)
        self._check()

    # -- readiness ------------------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "dataset" and self.facts and "error" not in self.facts:
            self._dataset_status()
        self._check()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "dataset-path" and self.facts and "error" not in self.facts:
            self._dataset_status()
        self._check()

    def on_researcher_panel_changed(self, message: ResearcherPanel.Changed) -> None:
        self._check()

    def _budget(self) -> float | None:
        try:
            value = float(self.query_one("#budget", Input).value)
        except ValueError:
            return None
        return value if value > 0 else None

    def missing(self) -> list[str]:
        """What Start still needs, in words (empty: it can start)."""
        if not self.facts:
            return ["looking at this machine"]
        if "error" in self.facts:
            return [self.facts["error"]]
        out = []
        tag = self.query_one("#tag", Input).value.strip()
        if tag and (self.runs_dir / tag).exists():
            out.append(f"a new name: {tag} exists in {self.runs_dir} (open it from the list of runs to resume it)")
        if self._budget() is None:
            out.append("the budget is a number of seconds above 0")
        name = self._dataset()
        if self.preparing:
            out.append(f"preparing {name}")
        elif not name or not self._prepared(name):
            out.append(f"the data: prepare {name or 'a dataset'} (or choose a prepared one)")
        problem = self.query_one(ResearcherPanel).missing()
        if problem:
            out.append(f"the researcher: {problem}")
        return out

    def _check(self) -> None:
        missing = self.missing()
        start = self.query_one("#start", Button)
        start.disabled = bool(missing)
        problem = self.query_one("#problem", Static)
        if missing:
            problem.update(Text("Start needs: " + "; ".join(missing), style="yellow"))
        else:
            problem.update(Text("ready: Start creates the run and starts its engine in the background", style="green"))
        budget = self._budget()
        if budget:
            per_hour = 3600 / (budget + ENGINE_OVERHEAD_S)
            self.query_one("#pace", Static).update(Text(
                f"about {per_hour:.0f} experiments an hour, {per_hour * 8:.0f} in an 8-hour night; each change is "
                "kept only if it really beats the best (policy)", style="dim"))

    # -- buttons --------------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "prepare":
            self._start_prepare()
        elif event.button.id == "start":
            self._on_start(event.button)

    def action_start(self) -> None:
        self._on_start(self.query_one("#start", Button))

    def _on_start(self, button: Button) -> None:
        if self.missing() or button.disabled:
            self._check()
            if self.missing():
                self.notify("Start needs: " + "; ".join(self.missing()), severity="warning")
            return
        panel = self.query_one(ResearcherPanel)
        tag = self.query_one("#tag", Input).value.strip() or default_tag(self.runs_dir)
        button.disabled = True
        self.query_one("#problem", Static).update(Text(f"creating {tag} and starting its engine…", style="dim"))
        env = None
        if panel.kind == "ollama" and panel.host() != self.facts["ollama_host"]:
            import os

            env = dict(os.environ, OLLAMA_HOST=panel.host())
        self._start(tag, self._dataset(), self._budget() or 0, panel.spec(), panel.llm_url(),
                    str(self.query_one("#backend", Select).value), str(self.query_one("#policy", Select).value), env)

    @work(thread=True, exclusive=True, group="start")
    def _start(self, tag: str, dataset: str, budget: float, agent: str, llm_url: str | None, backend: str,
               policy: str, env: dict[str, str] | None) -> None:
        settings = config_mod.load()
        try:
            run, _ = open_or_create(self.runs_dir, tag, dataset=dataset, budget=budget, agent=agent, llm_url=llm_url,
                                    backend=backend, policy=policy, profile_overrides=settings.profile_overrides,
                                    data_root=settings.data_dir)
            launch_detached(run, env=env)
        except Exception as e:  # shown on the screen: the run may exist already, the data may be gone ...
            self.post_message(Started(None, str(e) or type(e).__name__))
        else:
            self.post_message(Started(run.path))

    def on_started(self, message: Started) -> None:
        if message.path is not None:
            self.dismiss(message.path)
            return
        self.query_one("#problem", Static).update(Text(message.error, style="red"))
        self.query_one("#start", Button).disabled = False
