"""The morning: walk the kept changes, mark each accept or reject, export the accepted ones, revert, re-test.

Everything comes from and goes to the run directory through :mod:`autoresearch.engine.review` and
:mod:`autoresearch.engine.export` (in worker threads that only post messages), so ``autoresearch review
--list`` in another shell sees the same verdicts, and a second look starts at the first unreviewed change.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from ...engine.diffs import ExperimentDiff, experiment_diff
from ...engine.ledger import Ledger
from ...engine.review import KeptChange, ReviewError, kept_changes, mark, request_retest, request_revert
from ...engine.rundir import RunDir
from .. import keys
from ..widgets.diff import unified
from .dialogs import ConfirmDialog

VERDICT_MARKS = {"accept": ("✓", "bold green"), "reject": ("✗", "bold red"), "unreviewed": ("·", "dim")}


class KeptLoaded(Message):
    def __init__(self, changes: list[KeptChange], error: str = "") -> None:
        super().__init__()
        self.changes = changes
        self.error = error


class ChangeDiff(Message):
    def __init__(self, index: int, diff: ExperimentDiff) -> None:
        super().__init__()
        self.index = index
        self.diff = diff


class Said(Message):
    """A worker's result for the user."""

    def __init__(self, text: str, severity: str = "information", reload: bool = False) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.reload = reload


def label(c: KeptChange) -> Text:
    mark_text, style = VERDICT_MARKS.get(c.verdict, ("·", "dim"))
    text = Text(no_wrap=True, overflow="ellipsis")  # one line each: the detail pane has the whole description
    if c.reverted_by is not None:
        text.append("↶ ", "bold yellow")
    else:
        text.append(f"{mark_text} ", style)
    text.append(f"{c.index:>4} ", "bold")
    text.append(f"{c.delta:+.4f} " if c.delta is not None else "   ?    ", "green" if (c.delta or 0) < 0 else "red")
    text.append(f"{c.confidence:4.1f}σ " if c.confidence is not None else "   ?σ ", "dim")
    text.append("⚠ " if c.test_disagrees else "  ", "bold yellow")
    text.append(c.description)
    return text


def facts(c: KeptChange, parent_label: str) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column()
    t.add_row("experiment", Text.assemble((f"{c.index}", "bold"), f"  {c.commit[:7]}", (f" vs {parent_label}", "dim")))
    t.add_row("change", Text(c.description, style="bold"))
    val = Text(f"{c.val_bpb:.6f}" if c.val_bpb is not None else "?")
    if c.delta is not None:
        val.append(f"  {c.delta:+.6f}", "green" if c.delta < 0 else "red")
    if c.confidence is not None:
        word = "clearly above the noise" if c.confidence >= 2 else "within the noise"
        val.append(f"  {c.confidence:.1f} σ ({word})", "dim")
    val.append(f"  over {c.seeds} seed(s)", "dim")
    t.add_row("val_bpb", val)
    test = Text(f"{c.test_bpb:.6f}" if c.test_bpb is not None else "not scored")
    if c.test_delta is not None:
        test.append(f"  {c.test_delta:+.6f}", "green" if c.test_delta < 0 else "red")
    if c.test_disagrees:
        test.append("  ⚠ better on val, not on the held-out test split", "bold yellow")
    t.add_row("test_bpb", test)
    time_text = f"{c.training_seconds:.0f} s" if c.training_seconds is not None else "?"
    mem = f"{c.memory_gb:.1f} GB" if c.memory_gb is not None else "?"
    t.add_row("training", f"{time_text} · memory {mem}")
    mark_text, style = VERDICT_MARKS.get(c.verdict, ("·", "dim"))
    verdict = Text(f"{mark_text} {c.verdict}", style)
    if c.reverted_by is not None:
        verdict = Text(f"↶ reverted (experiment {c.reverted_by})", "bold yellow")
    t.add_row("verdict", verdict)
    return t


class ReviewScreen(Screen[None]):
    BINDINGS = keys.REVIEW

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.changes: list[KeptChange] = []
        self._diff_for: int | None = None
        self.diff_shown: int | None = None  # the experiment whose diff is on screen
        self._first_load = True
        self._ledger: Ledger | None = None  # read-only, kept: each look reads only what was appended since

    def compose(self) -> ComposeResult:
        yield Static(id="review-title")
        with Horizontal(id="review-body"):
            with Vertical(id="kept-side"):
                yield OptionList(id="kept")
                yield Static(Text("✓ accepted ✗ rejected · unreviewed ↶ reverted ⚠ worse on test σ: gain/noise",
                                  style="dim"), id="legend")
            with VerticalScroll(id="review-detail"):
                yield Static(id="review-facts")
                yield Static(id="review-diff")
        yield Footer()

    def on_mount(self) -> None:
        self.on_resize()
        self.query_one("#kept", OptionList).focus()
        self._load()
        self.set_interval(3.0, self._load)  # an engine's revert or re-test shows up by itself

    def on_resize(self, event: object = None) -> None:
        self.set_class(self.size.width < 110, "narrow")  # the list above the change, not beside it

    # -- data -----------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="kept")
    def _load(self) -> None:
        try:
            if self._ledger is None:
                self._ledger = Ledger(self.run.path, writable=False)
            self._ledger.tail_new_events()
            changes = kept_changes(self._ledger)
        except Exception as e:  # shown on the screen: a damaged ledger, a run moved away
            self.post_message(KeptLoaded([], f"{type(e).__name__}: {e}"))
            return
        self.post_message(KeptLoaded(changes))

    def on_kept_loaded(self, message: KeptLoaded) -> None:
        title = self.query_one("#review-title", Static)
        if message.error:
            title.update(Text(f"review {self.run.tag}: the run cannot be read: {message.error}", "bold red"))
            return
        if message.changes == self.changes and not self._first_load:
            return
        self.changes = message.changes
        options = self.query_one("#kept", OptionList)
        keep = options.highlighted
        options.clear_options()
        options.add_options([Option(label(c), id=str(c.index)) for c in self.changes])
        if self._first_load:
            self._first_load = False
            first = next((i for i, c in enumerate(self.changes) if c.verdict == "unreviewed" and c.reverted_by is None), 0)
            keep = first
        if self.changes:
            options.highlighted = min(keep or 0, len(self.changes) - 1)
        self._title()
        self._show(self.current)

    def _title(self) -> None:
        left = sum(1 for c in self.changes if c.verdict == "unreviewed" and c.reverted_by is None)
        accepted = sum(1 for c in self.changes if c.verdict == "accept" and c.reverted_by is None)
        text = Text.assemble(("review ", "bold"), (self.run.tag, "bold cyan"),
                             f"  ·  {len(self.changes)} kept change(s), {accepted} accepted, ",
                             (f"{left} unreviewed", "bold yellow" if left else "green"))
        if not self.changes:
            text = Text.assemble(("review ", "bold"), (self.run.tag, "bold cyan"),
                                 "  ·  no kept change yet: only the baseline (the run keeps looking)")
        self.query_one("#review-title", Static).update(text)

    @property
    def current(self) -> KeptChange | None:
        highlighted = self.query_one("#kept", OptionList).highlighted
        if highlighted is None or not (0 <= highlighted < len(self.changes)):
            return None
        return self.changes[highlighted]

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(self.current)

    def _show(self, c: KeptChange | None) -> None:
        if c is None:
            self.query_one("#review-facts", Static).update("")
            self.query_one("#review-diff", Static).update("")
            return
        parent = f"experiment {c.parent_index}" if c.parent_index is not None else (c.parent or "")[:7]
        self.query_one("#review-facts", Static).update(facts(c, parent))
        if self._diff_for != c.index:
            self._diff_for = c.index
            self.query_one("#review-diff", Static).update(Text("reading the diff…", "dim"))
            self._read_diff(c)

    @work(thread=True, exclusive=True, group="diff")
    def _read_diff(self, c: KeptChange) -> None:
        diff = experiment_diff(self.run, c.commit, c.parent)
        if not get_current_worker().is_cancelled:
            self.post_message(ChangeDiff(c.index, diff))

    def on_change_diff(self, message: ChangeDiff) -> None:
        if message.index == self._diff_for:
            d = message.diff
            head = Text(f"\n+{d.added} −{d.removed} against its parent\n", "dim")
            body = Text(d.error, "red") if d.error else unified(d)
            self.query_one("#review-diff", Static).update(Group(head, body))
            self.diff_shown = message.index

    # -- verdicts -------------------------------------------------------------------------------------
    def _mark(self, verdict: str) -> None:
        c = self.current
        if c is None:
            return
        if c.reverted_by is not None:
            self.notify(f"experiment {c.index} was reverted: it is left out of exports", severity="warning")
            return
        try:
            mark(self.run, c.index, verdict)
        except (ReviewError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        i = self.changes.index(c)
        self.changes[i] = _with_verdict(c, verdict)
        options = self.query_one("#kept", OptionList)
        options.replace_option_prompt_at_index(i, label(self.changes[i]))
        self._title()
        if verdict != "unreviewed" and i + 1 < len(self.changes):
            options.highlighted = i + 1  # on to the next one
        else:
            self._show(self.changes[i])

    def action_accept(self) -> None:
        self._mark("accept")

    def action_reject(self) -> None:
        self._mark("reject")

    def action_unmark(self) -> None:
        self._mark("unreviewed")

    def action_cursor_down(self) -> None:
        self.query_one("#kept", OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#kept", OptionList).action_cursor_up()

    # -- revert, re-test, export ------------------------------------------------------------------------
    def action_revert(self) -> None:
        c = self.current
        if c is None:
            return

        def chosen(yes: bool | None) -> None:
            if yes:
                self._run_revert(c.index)

        self.app.push_screen(ConfirmDialog(
            f"Revert experiment {c.index} ({c.description})? A new commit takes it back from the best; the engine "
            "measures the result before its next experiment (at once when nothing runs the run).", "Revert"), chosen)

    @work(thread=True, exclusive=True, group="act")
    def _run_revert(self, index: int) -> None:
        try:
            self.post_message(Said(request_revert(self.run, index), reload=True))
        except (ReviewError, OSError) as e:
            self.post_message(Said(str(e), "error"))

    def action_retest(self) -> None:
        c = self.current
        if c is not None:
            self._run_retest(c.index)

    @work(thread=True, exclusive=True, group="act")
    def _run_retest(self, index: int) -> None:
        try:
            self.post_message(Said(request_retest(self.run, index)))
        except (ReviewError, OSError) as e:
            self.post_message(Said(str(e), "error"))

    def on_said(self, message: Said) -> None:
        self.notify(message.text, severity=message.severity, timeout=8)  # type: ignore[arg-type]
        if message.reload:
            self._load()

    def action_export(self) -> None:
        def done(result: str | None) -> None:
            if result:
                self.notify(result, timeout=12)

        self.app.push_screen(ExportDialog(self.run, self.changes), done)

    def action_back(self) -> None:
        self.app.pop_screen()


def _with_verdict(c: KeptChange, verdict: str) -> KeptChange:
    from dataclasses import replace

    return replace(c, verdict=verdict)


class Exported(Message):
    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text = text
        self.ok = ok


class ExportDialog(ModalScreen[str | None]):
    """Export the accepted (or all kept) changes: a branch (the run's repository or another), or a patch file."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="export.cancel")]

    def __init__(self, run: RunDir, changes: list[KeptChange]) -> None:
        super().__init__()
        self.run = run
        self.changes = changes  # as the review shows them (the export itself reads the run again)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="form"):
            yield Static(Text("Export", style="bold"), id="dialog-title")
            yield Static(Text(self._summary(), style="dim"))
            yield Label("which changes")
            yield Select([("the accepted ones", "accepted"), ("every kept change (reverted ones left out)", "all-kept")],
                         id="which", value="accepted", allow_blank=False)
            yield Label("as")
            yield Select([("a git branch, one commit per change", "branch"), ("one patch file of train.py", "patch")],
                         id="kind", value="branch", allow_blank=False)
            yield Label("branch name, or patch file", id="name-label")
            yield Input(f"{self.run.tag}-accepted", id="name")
            yield Label("repository for the branch (empty: the run's own)")
            yield Input("", id="repo", placeholder="e.g. ~/code/my-model (empty: the run's own repository)")
            yield Static(id="problem")
            with Horizontal(id="dialog-buttons"):
                yield Button("Export", id="go", variant="primary")
                yield Button("Cancel", id="cancel")

    def _summary(self) -> str:
        changes = [c for c in self.changes if c.reverted_by is None]
        accepted = [str(c.index) for c in changes if c.verdict == "accept"]
        return (f"{len(accepted)} accepted ({', '.join(accepted) or 'none yet'}) of {len(changes)} kept; each change "
                "is applied to the baseline train.py in order, and nothing is written if one does not apply.")

    def on_select_changed(self, event: Select.Changed) -> None:
        name = self.query_one("#name", Input)
        suffix = "accepted" if self.query_one("#which", Select).value == "accepted" else "kept"
        if self.query_one("#kind", Select).value == "patch":
            name.value = str(Path.cwd() / f"{self.run.tag}-{suffix}.patch")
        else:
            name.value = f"{self.run.tag}-{suffix}"
        self.query_one("#repo", Input).disabled = self.query_one("#kind", Select).value == "patch"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the name or the repository: export, as the button does."""
        self.query_one("#go", Button).press()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        if event.button.disabled:
            return
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.query_one("#problem", Static).update(Text("give a branch name or a file", style="red"))
            return
        event.button.disabled = True
        self.query_one("#problem", Static).update(Text("exporting…", style="dim"))
        self._export(str(self.query_one("#which", Select).value), str(self.query_one("#kind", Select).value), name,
                     self.query_one("#repo", Input).value.strip())

    @work(thread=True, exclusive=True, group="export")
    def _export(self, which: str, kind: str, name: str, repo: str) -> None:
        from ...engine.export import build, write_branch, write_patch

        try:
            series = build(self.run, which)
            listing = ", ".join(str(s.change.index) for s in series.steps)
            if kind == "patch":
                path = write_patch(series, Path(name).expanduser())
                text = f"wrote {path} (experiments {listing}): `git apply {path.name}` next to the baseline train.py"
            else:
                commits = write_branch(series, name, Path(repo) if repo else None)
                where = repo or str(self.run.path)
                text = f"branch {name} in {where}: {len(commits)} commit(s), experiments {listing}"
        except (ReviewError, OSError) as e:
            self.post_message(Exported(str(e), False))
        else:
            self.post_message(Exported(text, True))

    def on_exported(self, message: Exported) -> None:
        if message.ok:
            self.dismiss(message.text)
            return
        self.query_one("#problem", Static).update(Text(message.text, style="red"))
        self.query_one("#go", Button).disabled = False
