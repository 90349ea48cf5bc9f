"""The app over a recorded run directory (real git, real ledger): screens, bindings, steering, errors.

Pilot tests (Textual's headless driver); the engine is played by the test where one is needed: it holds the
run's lock (so the app sees an engine alive) and appends what an engine would (a taken command).
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

import fixture_run
from autoresearch.engine import control
from autoresearch.engine.events import ControlTaken, Paused, Stalled, TrainingFinished
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.rundir import RunDir
from autoresearch.tui.screens.dashboard import Dashboard
from autoresearch.tui.screens.dialogs import ErrorScreen, KeysScreen, QuitDialog
from autoresearch.tui.screens.picker import RunPicker
from autoresearch.tui.widgets.diff import DiffView
from autoresearch.tui.widgets.history import HistoryTable
from tui_harness import HeldLock, make_app, run_async, screen_text, until


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory with the recorded night (stopped) in it; tests copy it when they change it."""
    runs = tmp_path_factory.mktemp("recorded") / "runs"
    fixture_run.build(runs / "mar8")
    return runs


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    fixture_run.build(runs / "mar8")
    return runs


def dashboard(app) -> Dashboard:  # type: ignore[no-untyped-def]
    assert isinstance(app.screen, Dashboard), app.screen
    return app.screen


def sent(run: RunDir) -> list[str]:
    return [m["command"] for m in control.pending(run.state)]


@asynccontextmanager
async def attached(app, run: RunDir, size: tuple[int, int]) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """The app on a run whose lock the test holds, as if an engine ran it: the pilot once the dashboard sees it alive."""
    with HeldLock(run):
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: dashboard(app).state and dashboard(app).state.engine.alive, what="alive")
            yield pilot


def test_a_run_that_stopped_by_itself_is_not_shown_as_a_dead_engine(tmp_path: Path) -> None:
    fixture_run.build(tmp_path / "runs" / "done", experiments=5, open_status=None, stopped=True)

    async def main() -> None:
        app = make_app(tmp_path / "runs", tmp_path / "runs" / "done")
        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: len(dashboard(app).rows) >= 5, what="the rows")
            await until(pilot, lambda: "research on:" in screen_text(app), what="the stopped banner")
            text = screen_text(app)
            assert "engine not running" not in text
            assert "stopped at" in text and "stopped by the user after the experiment" in text
            assert "research on: autoresearch run --tag done" in text and "■ stopped at" in text
    run_async(main())


def test_dashboard_shows_the_run(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: len(dashboard(app).rows) == 41, what="41 rows")
            await pilot.pause(1.2)  # the plot redraws once a second
            text = screen_text(app)
            await pilot.press("g")  # the top of the table
            await pilot.pause(0.1)
            both = text + screen_text(app)
            for word in ("keep", "discard", "crash", "oom", "nan", "timeout", "invalid", "interrupted", "interrupted?"):
                assert f" {word} " in both, word
            assert "engine not running" in text and "autoresearch run --tag mar8" in text  # no engine holds the lock
            assert "best 0.972779 (-0.025121 vs baseline) #37" in text
            assert "33 scored, 13 kept" in text  # the plot's subtitle
            assert "step 00920" in text  # the log of the last training
            table = app.screen.query_one(HistoryTable)
            assert table.selected is not None and table.selected.index == 0  # g went to the top
            await pilot.press("G")
            assert table.selected.index == 40
    run_async(main())


def test_cursor_moves_and_the_diff_follows(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: dashboard(app).rows, what="rows")
            table = app.screen.query_one(HistoryTable)  # (under load the first selection can come after the rows)
            await until(pilot, lambda: table.selected is not None and table.selected.index == 40, what="the newest row")
            await pilot.press("k", "k")  # exp 38: its commit changes UNEMBED_LR 0.006 -> 0.008
            diff = app.screen.query_one(DiffView)
            await until(pilot, lambda: diff._diff is not None and diff._row.index == 38, what="diff of 38")
            assert diff._diff.added == 1 and diff._diff.removed == 1
            assert "+UNEMBED_LR = 0.008" in diff._diff.unified and "-UNEMBED_LR = 0.006" in diff._diff.unified
            assert "exp 38" in screen_text(app)
            await pilot.press("u")  # side by side
            await pilot.pause(0.1)
            assert diff._is_split()
            await pilot.press("g")  # the baseline: the script itself
            await until(pilot, lambda: diff._row.index == 0 and diff._diff is not None, what="baseline")
            assert "the baseline" in str(diff.border_title)
    run_async(main())


def test_narrow_terminal_panes_take_turns(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: dashboard(app).rows, what="rows")
            screen = dashboard(app)
            assert screen.has_class("narrow")
            shown = lambda: [p for p in ("log", "diff", "plot") if screen.query_one(f"#{p}").display]  # noqa: E731
            assert shown() == ["log"]
            await pilot.press("v")
            assert shown() == ["diff"]
            await pilot.press("v")
            assert shown() == ["plot"]
            await pilot.press("e")  # the engine log: back to the log pane
            assert shown() == ["log"] and screen.log_source == "engine"
    run_async(main())


def test_steering_keys_send_commands_and_report_when_taken(runs: Path) -> None:
    run = RunDir(runs / "mar8")

    async def main() -> None:
        app = make_app(runs, run.path)
        async with attached(app, run, size=(200, 50)) as pilot:
            await pilot.press("p")
            assert sent(run) == ["pause"]
            msg = control.pending(run.state)[0]
            # the engine takes it
            control.take(run.state)
            Ledger(run.path).append_many([ControlTaken(command="pause", id=msg["id"], outcome="done"),
                                          Paused(reason="paused by the user")])
            await until(pilot, lambda: dashboard(app).state.paused, what="paused")
            titles = [t for t, _, _ in dashboard(app).commands_now()]
            assert "Resume the run" in titles and "Pause after this experiment" not in titles
            assert any("pause: taken" in str(n.message) for n in app._notifications), list(app._notifications)
            await pilot.press("p")  # now it resumes
            await pilot.press("x")
            assert sent(run) == ["resume", "stop"]
            await pilot.press("X")  # stop now asks first
            assert isinstance(app.screen, type(app.screen)) and app.screen.__class__.__name__ == "ConfirmDialog"
            await pilot.press("escape")
            assert sent(run) == ["resume", "stop"]
            await pilot.press("S")  # skip asks too; there is a training (exp 40) in the ledger
            await pilot.press("y")
            assert sent(run) == ["resume", "stop", "skip"]
    run_async(main())


def test_a_stall_the_engine_recorded_is_a_banner_until_progress(runs: Path) -> None:
    run = RunDir(runs / "mar8")

    async def main() -> None:
        app = make_app(runs, run.path)
        async with attached(app, run, size=(200, 50)) as pilot:
            assert "no progress for" not in screen_text(app)
            Ledger(run.path).append(Stalled(seconds=2820, limit_seconds=1800, phase="training", index=40,
                                            detail="experiment"))
            await until(pilot, lambda: "no progress for" in screen_text(app), what="the stall banner")
            text = screen_text(app)
            assert "no progress for 47 min: the engine is training exp 40" in text, text
            assert "autoresearch stop mar8 --now" in text
            Ledger(run.path).append(TrainingFinished(index=40, outcome="ok", val_bpb=1.0))
            await until(pilot, lambda: "no progress for" not in screen_text(app), what="the banner gone")
    run_async(main())


def test_quit_leaves_the_run_going_or_stops_it(runs: Path) -> None:
    run = RunDir(runs / "mar8")

    async def main(choice: str) -> None:
        app = make_app(runs, run.path)
        async with attached(app, run, size=(120, 40)) as pilot:
            await pilot.press("q")
            assert isinstance(app.screen, QuitDialog)
            await pilot.press(choice)
            await pilot.pause(0.2)
        assert app.return_code == 0

    run_async(main("l"))
    assert sent(run) == []  # leaving sends nothing: the engine goes on
    run_async(main("s"))
    assert sent(run) == ["stop"]


def test_quit_without_an_engine_does_not_ask(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: dashboard(app).state is not None, what="state")
            await pilot.press("q")
            await pilot.pause(0.2)
            assert not app.is_running
    run_async(main())


def test_keys_screen_lists_the_live_bindings_with_ids(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: dashboard(app).rows, what="rows")
            await pilot.press("question_mark")
            assert isinstance(app.screen, KeysScreen)
            ids = {row[2] for row in app.screen.rows}
            assert {"dashboard.pause", "dashboard.stop", "app.quit", "history.sort"} <= ids
            await pilot.press("escape")
            assert isinstance(app.screen, Dashboard)
    run_async(main())


def test_user_keymap_remaps_and_reports_problems(runs: Path) -> None:
    run = RunDir(runs / "mar8")
    keymap = {"dashboard.pause": "ctrl+t", "dashboard.nonsense": "z", "dashboard.stop": "e"}  # e clashes

    async def main() -> None:
        app = make_app(runs, run.path, keymap=keymap)
        async with attached(app, run, size=(120, 40)) as pilot:
            problems = " | ".join(app.keymap_problems)
            assert "'dashboard.nonsense' is not a binding id" in problems
            assert "'e' is bound to both" in problems
            await pilot.press("ctrl+t")
            assert sent(run) == ["pause"]
            await pilot.press("p")  # no longer bound
            assert sent(run) == ["pause"]
    run_async(main())


def test_palette_offers_what_applies_now(recorded: Path) -> None:
    async def main() -> None:
        app = make_app(recorded, recorded / "mar8")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: dashboard(app).state is not None, what="state")
            titles = [t for t, _, _ in dashboard(app).commands_now()]
            assert "Resume the engine" in titles  # no engine
            assert not any(t.startswith(("Pause", "Stop", "Skip")) for t in titles)
            assert "Copy the commit of experiment 40" in titles
            await pilot.press("ctrl+p")
            await pilot.press(*"resume")
            await pilot.pause(0.5)
            assert "Resume the engine" in screen_text(app)
    run_async(main())


def test_picker_lists_running_runs_first_and_opens_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    old = fixture_run.build(runs / "aaa-old", experiments=5, open_status=None, stopped=True)
    live = fixture_run.build(runs / "zzz-live", experiments=8)

    async def main() -> None:
        app = make_app(runs)
        with HeldLock(live):
            async with app.run_test(size=(120, 40)) as pilot:
                picker = app.screen
                assert isinstance(picker, RunPicker)
                await until(pilot, lambda: len(picker.runs) == 2, what="runs listed")
                assert [r.tag for r in picker.runs] == ["zzz-live", "aaa-old"]
                text = screen_text(app)
                assert "running" in text and "stopped" in text and "+ new run" in text
                await pilot.press("enter")
                await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")
                assert dashboard(app).run.path == live.path
                await pilot.press("escape")
                assert isinstance(app.screen, RunPicker)
        assert old.exists()
    run_async(main())


def test_corrupt_ledger_shows_an_error_screen(runs: Path) -> None:
    run = RunDir(runs / "mar8")
    events = run.state / "events.jsonl"
    lines = events.read_text().splitlines()
    lines[5] = '{"event": "decision", "ind'  # damage in the middle, not a torn last line
    events.write_text("\n".join(lines) + "\n")

    async def main() -> None:
        app = make_app(runs, run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ErrorScreen), what="error screen")
            await until(pilot, lambda: "cannot be read" in screen_text(app), what="the message")
            text = screen_text(app)
            assert "cannot be read" in text and "line 6" in text and "Move that line out" in text
    run_async(main())


def test_a_vanished_run_directory_is_said_not_raised(runs: Path) -> None:
    import shutil

    run = RunDir(runs / "mar8")

    async def main() -> None:
        app = make_app(runs, run.path)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: dashboard(app).rows, what="rows")
            shutil.rmtree(run.path)
            await until(pilot, lambda: isinstance(app.screen, ErrorScreen), what="error screen")
            await until(pilot, lambda: "is gone" in screen_text(app), what="the message")
    run_async(main())


def test_control_queue_keeps_both_of_two_quick_commands(tmp_path: Path) -> None:
    state = tmp_path / ".autoresearch"
    state.mkdir()
    a = control.send(state, "pause")
    b = control.send(state, "resume")
    assert [m["id"] for m in control.pending(state)] == [a["id"], b["id"]]
    assert control.take(state)["id"] == a["id"] and control.take(state)["id"] == b["id"]
    assert control.take(state) is None
    (state / "control").write_text(json.dumps({"command": "stop", "id": "old"}))  # an older client's file
    assert control.take(state)["id"] == "old"
    assert os.listdir(state / "control.d") == []


def test_copy_pager_and_resume_keys(runs: Path) -> None:
    async def main() -> None:
        app = make_app(runs, runs / "mar8")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: dashboard(app).state is not None and dashboard(app).rows, what="state")
            row = app.screen.query_one(HistoryTable).selected
            await pilot.press("y")
            assert app.clipboard == row.commit
            await pilot.press("L")  # the test driver cannot hand the terminal to a pager: said, not raised
            await until(pilot, lambda: any("pager" in str(n.message) for n in app._notifications), what="pager note")
            await pilot.press("R")  # the recorded run's data is not on this machine: the engine's own message
            await until(pilot, lambda: any("stopped at once" in str(n.message) for n in app._notifications),
                        timeout=60, what="the failed start")
            text = " ".join(str(n.message) for n in app._notifications)
            assert "the run's data is not usable" in text
            await pilot.press("o")  # sort by val_bpb: the best first
            table = app.screen.query_one(HistoryTable)
            assert table.sort_column == "val_bpb" and table.row_at(0).val_bpb == min(
                r.val_bpb for r in dashboard(app).rows.values() if r.val_bpb is not None)
    run_async(main())
