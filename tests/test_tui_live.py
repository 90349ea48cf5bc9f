"""The app with real engines (slow: real CPU trainings): a run started from the app, and attaching to a run
started headless in another process, then quitting while it goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.engine import control
from autoresearch.engine.rundir import RunDir, RunLock
from autoresearch.harness.prepare import Prepared
from autoresearch.tui.screens.dashboard import Dashboard
from autoresearch.tui.screens.dialogs import QuitDialog
from autoresearch.tui.screens.setup import SetupScreen
from autoresearch.tui.widgets.logview import LogView
from tiny_profile import write_config
from tui_harness import make_app, run_async, screen_text, until

pytestmark = pytest.mark.slow



@pytest.fixture
def tiny_config(tmp_path: Path, stdlib_small: Prepared, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with a tiny CPU profile on the small prepared stdlib slice (the engines read it too)."""
    config_dir = tmp_path / "config"
    runs = tmp_path / "runs"
    write_config(config_dir, stdlib_small.directory.parent, runs)
    monkeypatch.setenv("AUTORESEARCH_CONFIG_DIR", str(config_dir))
    return runs


def stop(run: RunDir, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:  # type: ignore[type-arg]
    if RunLock(run).is_held():
        control.send(run.state, "stop-now")
    end = time.monotonic() + timeout
    while RunLock(run).is_held() and time.monotonic() < end:
        time.sleep(0.2)
    if proc is not None:
        proc.wait(timeout=30)


def test_a_run_started_from_the_app_shows_rows_and_log_lines(tiny_config: Path) -> None:
    runs = tiny_config

    async def main() -> None:
        app = make_app(runs, clock=time.time, load_sampler=None)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("n")
            dialog = app.screen
            assert isinstance(dialog, SetupScreen)
            await until(pilot, lambda: not dialog.query_one("#start").disabled, timeout=60, what="the plan")
            dialog.query_one("#tag").value = "fromapp"
            await pilot.click("#start")
            problem = dialog.query_one("#problem")
            try:
                await until(pilot, lambda: isinstance(app.screen, Dashboard), timeout=120, what="the dashboard")
            except AssertionError:
                raise AssertionError(f"no dashboard; the dialog says: {problem.render()}") from None
            screen = app.screen
            try:
                await until(pilot, lambda: screen.state is not None and screen.state.engine.alive, timeout=30, what="alive")
                await until(pilot, lambda: screen.query_one(LogView).line_count > 0, timeout=120, what="log lines")
                await until(pilot, lambda: any(r.status == "keep" for r in screen.rows.values()), timeout=240,
                            what="the baseline kept")
                await until(pilot, lambda: len(screen.rows) >= 2, timeout=240, what="an experiment of the search agent")
                text = screen_text(app)
                assert "fromapp" in text and "baseline" in text
            finally:
                stop(RunDir(runs / "fromapp"))
    run_async(main())
    assert (runs / "fromapp" / ".autoresearch" / "engine.log").read_text().count("launching: ") == 1


def test_attach_to_a_headless_run_and_quit_leaves_it_running(tiny_config: Path) -> None:
    runs = tiny_config
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--headless", "--tag", "night", "--agent",
                             "search", "--dataset", "stdlib", "--runs-dir", str(runs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    run = RunDir(runs / "night")
    try:
        end = time.monotonic() + 120
        while not (run.exists() and RunLock(run).is_held()) and time.monotonic() < end:
            assert proc.poll() is None, "the headless engine exited"
            time.sleep(0.2)

        async def main() -> None:
            app = make_app(runs, run.path, clock=time.time, load_sampler=None)
            async with app.run_test(size=(120, 40)) as pilot:
                screen = app.screen
                assert isinstance(screen, Dashboard)
                await until(pilot, lambda: screen.state is not None and screen.state.engine.alive, timeout=30, what="alive")
                await until(pilot, lambda: screen.rows, timeout=60, what="a row")
                await until(pilot, lambda: screen.query_one(LogView).line_count > 0, timeout=120, what="log lines")
                await pilot.press("q")
                assert isinstance(app.screen, QuitDialog)
                await pilot.press("l")  # leave it running (the default)
                await pilot.pause(0.2)
            assert app.return_code == 0

        run_async(main())
        time.sleep(1.0)
        assert proc.poll() is None and RunLock(run).is_held()  # the engine goes on without the app
        assert control.pending(run.state) == []  # and was sent nothing
    finally:
        stop(run, proc)
    assert proc.returncode == 0
