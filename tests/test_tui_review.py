"""The review screen and the notes dialog over a recorded night (real git, real ledger), with Textual's Pilot."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import fixture_run
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.review import kept_changes
from autoresearch.tui.screens.dashboard import Dashboard
from autoresearch.tui.screens.notes import NotesDialog
from autoresearch.tui.screens.review import ExportDialog, ReviewScreen
from tui_harness import make_app, run_async, screen_text, until

WORSE_ON_TEST = 5


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    fixture_run.build(runs / "mar8", open_status=None, stopped=True, worse_on_test=(WORSE_ON_TEST,))
    return runs


def verdicts(run: Path) -> dict[int, str]:
    return {c.index: c.verdict for c in kept_changes(Ledger(run, writable=False))}


def review(app) -> ReviewScreen:  # type: ignore[no-untyped-def]
    assert isinstance(app.screen, ReviewScreen), app.screen
    return app.screen


def test_walk_mark_and_come_back_where_it_stopped(runs: Path) -> None:
    run = runs / "mar8"

    async def first_look() -> None:
        app = make_app(runs, run, review=True)
        async with app.run_test(size=(160, 45)) as pilot:
            await until(pilot, lambda: len(review(app).changes) == 12, what="12 kept changes")
            await until(pilot, lambda: "+1 −1 against its parent" in screen_text(app), what="the diff")
            text = screen_text(app)
            assert "12 kept change(s), 0 accepted, 12 unreviewed" in text
            assert "halve batch 524K to 262K" in text and "val_bpb" in text and "test_bpb" in text
            assert "σ" in text and "MATRIX_LR" in text  # the confidence, and the diff of experiment 1
            assert review(app).current.index == 1
            await pilot.press("a")  # accept 1, on to 2
            await pilot.press("r")  # reject 2, on to 4
            assert review(app).current.index == 4
            await pilot.press("j")  # 5: better on val, not on test
            await pilot.pause(0.2)
            assert review(app).current.index == WORSE_ON_TEST
            assert "better on val, not on the held-out test split" in screen_text(app)
            await pilot.press("k", "a")  # back to 4, accept it
            await pilot.pause(0.1)
            assert "3 accepted" not in screen_text(app) and "2 accepted, 9 unreviewed" in screen_text(app)
        assert verdicts(run)[1] == "accept" and verdicts(run)[2] == "reject" and verdicts(run)[4] == "accept"

    async def second_look() -> None:
        app = make_app(runs, run, review=True)
        async with app.run_test(size=(160, 45)) as pilot:
            await until(pilot, lambda: len(review(app).changes) == 12, what="12 kept changes")
            assert review(app).current.index == WORSE_ON_TEST  # the first still unreviewed
            await pilot.press("escape")  # back to the dashboard under it
            await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")

    run_async(first_look())
    run_async(second_look())


def test_export_a_branch_from_the_screen_and_a_conflict_is_said(runs: Path) -> None:
    run = runs / "mar8"

    async def main() -> None:
        app = make_app(runs, run, review=True)
        async with app.run_test(size=(160, 45)) as pilot:
            await until(pilot, lambda: len(review(app).changes) == 12, what="kept changes")
            await pilot.press("r")  # reject 1 ...
            for _ in range(5):  # ... move to 8 (1, 2, 4, 5, 6, 7, 8 -> five more steps) and accept it
                await pilot.press("j")
            assert review(app).current.index == 8
            await pilot.press("a")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExportDialog), what="export dialog")
            await pilot.click("#go")
            await until(pilot, lambda: "does not apply without" in screen_text(app), what="the conflict")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, ReviewScreen), what="back")
            review(app).query_one("#kept").highlighted = 6  # experiment 8: reject it after all ...
            await pilot.pause(0.05)
            await pilot.press("r")
            assert review(app).current.index == 10  # ... and accept 10
            await pilot.press("a")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExportDialog), what="export dialog")
            app.screen.query_one("#name").value = "morning"
            await pilot.click("#go")
            await until(pilot, lambda: isinstance(app.screen, ReviewScreen), what="exported")
        log = subprocess.run(["git", "log", "--format=%s", "morning"], cwd=run, capture_output=True, text=True,
                             check=True).stdout.splitlines()
        assert [i for i, v in verdicts(run).items() if v == "accept"] == [10]
        assert len(log) == 2 and log[0] == "x0_lambda init 0.1 to 0.05"  # one commit per accepted change, on the baseline

    run_async(main())


def test_notes_from_the_dashboard(runs: Path) -> None:
    run = runs / "mar8"

    async def main() -> None:
        app = make_app(runs, run)
        async with app.run_test(size=(160, 45)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.state is not None, what="dash")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, NotesDialog), what="notes dialog")
            await pilot.press(*"try a smaller batch", "enter")
            await until(pilot, lambda: "1. try a smaller batch" in screen_text(app), what="the note listed")
            assert "it ignores notes" not in screen_text(app)  # this run's agent is an LLM
            await pilot.press("escape")
            await until(pilot, lambda: "notes: try a smaller batch" in screen_text(app), what="the notes line")
            await pilot.press("n")
            await until(pilot, lambda: "1. try a smaller batch" in screen_text(app), what="listed")
            await pilot.press("tab", "delete")
            await until(pilot, lambda: "no notes yet" in screen_text(app), what="removed")
        assert Ledger(run, writable=False).notes() == []
        assert [e["event"] for e in Ledger(run, writable=False).events()][-2:] == ["note_added", "note_removed"]

    run_async(main())
