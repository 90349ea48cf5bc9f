"""Snapshots of the app at fixed sizes over the recorded run: Textual's own SVG export, compared byte for byte.

(pytest-textual-snapshot pins syrupy 4.8, which needs pytest < 9; comparing the SVG ourselves keeps pytest 9.)
When a change of the app is intended, regenerate and look at them:

    AR_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_tui_snapshots.py

A failing comparison writes the new picture next to the expected one as ``*.actual.svg`` (ignored by git).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fixture_run
from autoresearch.engine.rundir import RunDir
from autoresearch.tui.screens.dashboard import Dashboard
from autoresearch.tui.screens.picker import RunPicker
from tui_harness import HeldLock, make_app, run_async, until

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("AR_UPDATE_SNAPSHOTS") == "1"


def compare(name: str, svg: str) -> None:
    expected = SNAPSHOTS / f"{name}.svg"
    actual = SNAPSHOTS / f"{name}.actual.svg"
    if UPDATE or not expected.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        expected.write_text(svg)
        actual.unlink(missing_ok=True)
        if not UPDATE:
            pytest.fail(f"no snapshot {expected.name} yet: written now; look at it, then commit it")
        return
    if expected.read_text() != svg:
        actual.write_text(svg)
        pytest.fail(f"{name} differs from {expected}: the new one is {actual}. If the change is intended, "
                    "run with AR_UPDATE_SNAPSHOTS=1 and commit the new snapshot.")
    actual.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding runs/ (the app shows the runs directory as given: relative, here)."""
    base = tmp_path_factory.mktemp("snap")
    fixture_run.build(base / "runs" / "mar8")
    fixture_run.build(base / "runs" / "feb27", experiments=12, open_status=None, stopped=True)
    return base


@pytest.fixture
def in_workdir(workdir: Path):  # type: ignore[no-untyped-def]
    old = Path.cwd()
    os.chdir(workdir)
    try:
        yield workdir
    finally:
        os.chdir(old)


async def _dashboard_svg(size: tuple[int, int]) -> str:
    app = make_app(Path("runs"), Path("runs/mar8"))
    with HeldLock(RunDir(Path("runs/mar8"))):
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: isinstance(app.screen, Dashboard) and len(app.screen.rows) == 41, what="rows")
            await until(pilot, lambda: not app.screen._plot_dirty and app.screen.state.engine.alive, what="drawn")
            await pilot.pause(0.3)
            return app.export_screenshot()


async def _picker_svg(size: tuple[int, int]) -> str:
    app = make_app(Path("runs"))
    with HeldLock(RunDir(Path("runs/mar8"))):
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunPicker) and len(app.screen.runs) == 2, what="runs")
            await pilot.pause(0.3)
            return app.export_screenshot()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_dashboard_snapshot(in_workdir: Path, size: tuple[int, int]) -> None:
    compare(f"dashboard-{size[0]}x{size[1]}", run_async(_dashboard_svg(size)))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_picker_snapshot(in_workdir: Path, size: tuple[int, int]) -> None:
    compare(f"picker-{size[0]}x{size[1]}", run_async(_picker_svg(size)))


@pytest.fixture(scope="module")
def review_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped night with verdicts on two changes, one kept change worse on the held-out test split."""
    from autoresearch.engine.review import mark

    base = tmp_path_factory.mktemp("snap-review")
    run = fixture_run.build(base / "runs" / "mar8", open_status=None, stopped=True, worse_on_test=(5,))
    mark(run, 1, "accept")
    mark(run, 2, "reject")
    return base


async def _review_svg(size: tuple[int, int]) -> str:
    from autoresearch.tui.screens.review import ReviewScreen

    app = make_app(Path("runs"), Path("runs/mar8"), review=True)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and len(app.screen.changes) == 12, what="kept")
        await pilot.press("j")  # onto 5: the one worse on test
        await until(pilot, lambda: app.screen.diff_shown == 5, what="the diff")
        await pilot.pause(0.3)
        return app.export_screenshot()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_review_snapshot(review_workdir: Path, size: tuple[int, int]) -> None:
    old = Path.cwd()
    os.chdir(review_workdir)
    try:
        compare(f"review-{size[0]}x{size[1]}", run_async(_review_svg(size)))
    finally:
        os.chdir(old)
