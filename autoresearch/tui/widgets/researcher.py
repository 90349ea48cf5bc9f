"""The setup screen's choice of researcher: Ollama (its models, what fits, a pull with progress), an
OpenAI-compatible server (test connection), Anthropic (the key it reads), or the search agent (no LLM).

Every check goes through :mod:`autoresearch.agent.readiness` in a worker thread; the panel says what is missing
in words (:meth:`ResearcherPanel.missing`) and posts :class:`ResearcherPanel.Changed` when that may have changed.
"""

from __future__ import annotations

import os

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from ...agent.readiness import ServerModels, fits, ollama_models, openai_models
from ..progress import PostingProgress, ProgressUpdate

KINDS = [("Ollama, local models (or OLLAMA_HOST)", "ollama"),
         ("an OpenAI-compatible server (llama.cpp, LM Studio, vLLM, a hosted API)", "openai"),
         ("Anthropic (Claude, through its API)", "anthropic"),
         ("search: Optuna TPE over the knobs, no LLM", "search")]
SAMPLERS = [("TPE (Optuna's default)", "search"), ("CMA-ES", "search:cmaes"), ("random", "search:random")]
DEFAULT_ANTHROPIC = "claude-sonnet-4-5"
DEFAULT_OPENAI_URL = "http://127.0.0.1:8080/v1"


class Listed(Message):
    def __init__(self, kind: str, result: ServerModels) -> None:
        super().__init__()
        self.kind = kind
        self.result = result


class Pulled(Message):
    def __init__(self, model: str, error: str = "") -> None:
        super().__init__()
        self.model = model
        self.error = error


def _gb(size: int) -> str:
    return f"{size / 1024**3:.1f} GB" if size else "size ?"


class ResearcherPanel(Vertical):
    class Changed(Message):
        """The researcher's readiness may have changed (the setup screen re-checks Start)."""

    def __init__(self, *, ollama_host: str = "", memory_gb: float | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ollama_host = ollama_host
        self.memory_gb = memory_gb
        self.ollama: ServerModels | None = None  # None while asking
        self.openai: ServerModels | None = None  # None until tested
        self.pulling = False
        self.pulled = ""  # the model pulled here (chosen once the list has it)
        self._kind_chosen = False  # the user picked a kind: a server found later does not override it

    def compose(self) -> ComposeResult:
        yield Select(KINDS, id="agent-kind", value="ollama", allow_blank=False)
        yield Static(id="kind-note")
        with Vertical(id="ollama-box", classes="agent-box"):
            with Horizontal(classes="row"):
                yield Input(self.ollama_host, id="ollama-host", placeholder="http://127.0.0.1:11434")
                yield Button("Refresh", id="ollama-refresh")
            yield Select([], id="ollama-model", prompt="asking Ollama for its models…")
            with Horizontal(classes="row"):
                yield Input(placeholder="or a model to pull, e.g. qwen2.5-coder:7b", id="ollama-other")
                yield Button("Pull", id="pull")
            yield ProgressBar(id="pull-progress", show_eta=True)
            yield Static(id="ollama-status")
        with Vertical(id="openai-box", classes="agent-box"):
            with Horizontal(classes="row"):
                yield Input(os.environ.get("OPENAI_BASE_URL", DEFAULT_OPENAI_URL), id="openai-url")
                yield Button("Test connection", id="openai-test")
            yield Select([], id="openai-model", prompt="test the connection to list the server's models")
            yield Static(id="openai-status")
        with Vertical(id="anthropic-box", classes="agent-box"):
            yield Label("model")
            yield Input(DEFAULT_ANTHROPIC, id="anthropic-model")
            yield Static(id="anthropic-status")
        with Vertical(id="search-box", classes="agent-box"):
            yield Select(SAMPLERS, id="search-sampler", value="search", allow_blank=False)
            yield Static(Text("Tries numbers for the knobs at the top of train.py; it does not read steering notes.",
                              style="dim"))

    def on_mount(self) -> None:
        self.query_one("#pull-progress").display = False
        self._show_box()
        self._anthropic_status()

    def start(self, ollama_host: str, memory_gb: float | None) -> None:
        """The machine is known: ask the Ollama server (the config's) for its models."""
        self.ollama_host, self.memory_gb = ollama_host, memory_gb
        self.query_one("#ollama-host", Input).value = ollama_host
        self._list_ollama(ollama_host)

    # -- the kind ---------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return str(self.query_one("#agent-kind", Select).value)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "agent-kind":
            if event.select.has_focus:
                self._kind_chosen = True
            self._show_box()
        self.post_message(self.Changed())

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "openai-url":
            self.openai = None  # a new URL: test it again
        self.post_message(self.Changed())

    def _show_box(self) -> None:
        for box in self.query(".agent-box"):
            box.display = box.id == f"{self.kind}-box"

    # -- what it is, what is missing ----------------------------------------------------------------------
    def spec(self) -> str:
        kind = self.kind
        if kind == "search":
            return str(self.query_one("#search-sampler", Select).value)
        if kind == "ollama":
            return f"ollama:{self._ollama_model()}"
        if kind == "openai":
            value = self.query_one("#openai-model", Select).value
            return f"openai:{value if isinstance(value, str) else ''}"
        return f"anthropic:{self.query_one('#anthropic-model', Input).value.strip()}"

    def llm_url(self) -> str | None:
        return self.query_one("#openai-url", Input).value.strip() if self.kind == "openai" else None

    def host(self) -> str:
        return self.query_one("#ollama-host", Input).value.strip() or self.ollama_host

    def _ollama_model(self) -> str:
        other = self.query_one("#ollama-other", Input).value.strip()
        value = self.query_one("#ollama-model", Select).value
        return other or (value if isinstance(value, str) else "")

    def missing(self) -> str:
        """What the researcher still needs, in words ('' when it is ready)."""
        kind = self.kind
        if kind == "search":
            return ""
        if kind == "ollama":
            if self.ollama is None:
                return "waiting for Ollama's list of models"
            if self.ollama.problem:
                return self.ollama.problem
            model = self._ollama_model()
            if not model:
                return "choose an Ollama model (or pull one)"
            if model not in dict(self.ollama.models) and f"{model}:latest" not in dict(self.ollama.models):
                return f"{model} is not on the Ollama server: press Pull" + (" (pulling…)" if self.pulling else "")
            return ""
        if kind == "openai":
            if self.openai is None:
                return "test the connection to the OpenAI-compatible server"
            if self.openai.problem:
                return self.openai.problem
            return "" if self.spec() != "openai:" else "choose the server's model"
        if not os.environ.get("ANTHROPIC_API_KEY"):
            return "ANTHROPIC_API_KEY is not set: quit, `export ANTHROPIC_API_KEY=...`, and open the app again"
        return "" if self.spec() != "anthropic:" else "name the Claude model"

    # -- Ollama ------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="ollama")
    def _list_ollama(self, host: str) -> None:
        self.post_message(Listed("ollama", ollama_models(host)))

    def on_listed(self, message: Listed) -> None:
        if message.kind == "ollama":
            self.ollama = message.result
            self._fill_ollama()
        else:
            self.openai = message.result
            self._fill_openai()
        self.post_message(self.Changed())

    def _fill_ollama(self) -> None:
        result = self.ollama
        assert result is not None
        status = self.query_one("#ollama-status", Static)
        select = self.query_one("#ollama-model", Select)
        if result.problem:
            select.set_options([])
            status.update(Text(result.problem, style="red"))
            if not self._kind_chosen:  # no Ollama here: the agent that needs nothing
                self.query_one("#agent-kind", Select).value = "search"
                self.query_one("#kind-note", Static).update(Text(
                    f"The search agent is chosen: {result.problem}. For an LLM researcher, choose Ollama once its "
                    "server runs, or another kind above.", style="yellow"))
            return
        self.query_one("#kind-note", Static).update("")
        options = []
        for name, size in result.models:
            ok = fits(size, self.memory_gb)
            options.append((Text.assemble(name, (f"  {_gb(size)}", "dim"),
                                          ("  fits" if ok else "  too big next to the training", "green" if ok else "red")),
                            name))
        select.set_options(options)
        fitting = [(size, name) for name, size in result.models if fits(size, self.memory_gb)]
        if fitting:
            select.value = max(fitting)[1]  # the largest that fits: the recommended default
        if not result.models:
            status.update(Text(f"Ollama at {self.host()} has no models yet: type one above and press Pull "
                               "(qwen2.5-coder:7b is a good start on 16 GB)", style="yellow"))
        elif self.pulled:
            select.value = self.pulled if self.pulled in dict(result.models) else select.value
            self.query_one("#ollama-other", Input).value = ""
            status.update(Text(f"pulled {self.pulled}; {len(result.models)} model(s) on {self.host()}", style="green"))
        else:
            status.update(Text(f"{len(result.models)} model(s) on {self.host()}; the largest that fits is chosen",
                               style="dim"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ollama-refresh":
            self.ollama = None
            self.query_one("#ollama-status", Static).update(Text("asking…", style="dim"))
            self._list_ollama(self.host())
            self.post_message(self.Changed())
        elif event.button.id == "pull":
            model = self._ollama_model()
            if not model:
                self.query_one("#ollama-status", Static).update(Text("type the model to pull first", style="red"))
                return
            self.pulling = True
            event.button.disabled = True
            bar = self.query_one("#pull-progress", ProgressBar)
            bar.display = True
            bar.update(total=None, progress=0)
            self._pull(self.host(), model)
        elif event.button.id == "openai-test":
            self.query_one("#openai-status", Static).update(Text("asking the server…", style="dim"))
            self._list_openai(self.query_one("#openai-url", Input).value.strip())
        event.stop()

    @work(thread=True, exclusive=True, group="pull")
    def _pull(self, host: str, model: str) -> None:
        from ...agent.base import AgentError
        from ...agent.ollama import OllamaProvider

        try:
            OllamaProvider(model, host).pull(PostingProgress(self.post_message, "pull"))
        except AgentError as e:
            self.post_message(Pulled(model, str(e)))
        else:
            self.post_message(Pulled(model))

    def on_progress_update(self, message: ProgressUpdate) -> None:
        if message.key != "pull":
            return
        message.stop()
        bar = self.query_one("#pull-progress", ProgressBar)
        if message.what:
            bar.update(total=message.total, progress=message.done)
        if message.text:
            self.query_one("#ollama-status", Static).update(Text(message.text, style="dim"))

    def on_pulled(self, message: Pulled) -> None:
        self.pulling = False
        self.query_one("#pull", Button).disabled = False
        self.query_one("#pull-progress").display = False
        if message.error:
            self.query_one("#ollama-status", Static).update(Text(f"pull failed: {message.error}", style="red"))
            return
        self.pulled = message.model
        self.query_one("#ollama-status", Static).update(Text(f"pulled {message.model}", style="green"))
        self._list_ollama(self.host())

    # -- OpenAI-compatible, Anthropic ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="openai")
    def _list_openai(self, url: str) -> None:
        self.post_message(Listed("openai", openai_models(url, os.environ.get("OPENAI_API_KEY", ""))))

    def _fill_openai(self) -> None:
        result = self.openai
        assert result is not None
        status = self.query_one("#openai-status", Static)
        select = self.query_one("#openai-model", Select)
        if result.problem:
            select.set_options([])
            status.update(Text(result.problem, style="red"))
            return
        select.set_options([(name, name) for name, _ in result.models])
        if result.models:
            select.value = result.models[0][0]
            status.update(Text(f"connected: {len(result.models)} model(s)", style="green"))
        else:
            status.update(Text("connected, but the server lists no model", style="yellow"))

    def _anthropic_status(self) -> None:
        key = os.environ.get("ANTHROPIC_API_KEY")
        self.query_one("#anthropic-status", Static).update(
            Text("ANTHROPIC_API_KEY is set", style="green") if key else
            Text("ANTHROPIC_API_KEY is not set: quit, `export ANTHROPIC_API_KEY=...`, open the app again", style="red"))
