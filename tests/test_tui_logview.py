"""LogView in a headless Textual app: follows a growing file, pauses when scrolled up, resumes with f."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.worker import WorkerState

from autoresearch.tui.widgets.logview import LogView

pytestmark = pytest.mark.timeout(60)

STEP = "step {i:05d} |  45.2% | loss 3.2104 | 12,345 tok/s | remaining 17s\n"


class LogApp(App[None]):
    """The smallest host for a LogView."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self.grew: list[int] = []  # LogView.Grew messages that bubbled up

    def on_log_view_grew(self, message: LogView.Grew) -> None:
        self.grew.append(message.count)

    def compose(self) -> ComposeResult:
        yield LogView(self.path, id="log")

    def on_mount(self) -> None:
        self.query_one(LogView).focus()


def _append(path: Path, lines: range | list[str]) -> None:
    with path.open("a") as f:
        f.writelines(STEP.format(i=i) if isinstance(i, int) else i for i in lines)


async def _until(pilot: Pilot, check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll the app until `check()` holds (bounded), so no test sleeps longer than it must."""
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await pilot.pause(0.05)
    assert check(), "condition not reached in time"


def _screen_text(view: LogView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


def _run(path: Path | None, body: Callable[[LogApp, LogView, Pilot], Awaitable[None]]) -> None:
    async def main() -> None:
        app = LogApp(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await body(app, app.query_one(LogView), pilot)

    asyncio.run(main())


def test_follows_a_growing_file(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(5))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 5)
        assert view.border_title == "train.log"
        assert view.scroll_y == view.max_scroll_y == 0
        _append(log, range(5, 200))
        await _until(pilot, lambda: view.line_count == 200 and view.scroll_y == view.max_scroll_y)
        assert view.max_scroll_y == 200 - view.scrollable_content_region.height
        assert view.following and view.border_subtitle == "200 lines"
        await pilot.pause()
        assert _screen_text(view)[-1] == STEP.format(i=199).rstrip()
        with log.open("a") as f:  # a partial line shows, then completes
            f.write("step 00200 | half")
        await _until(pilot, lambda: view.line_count == 201 and view.scroll_y == view.max_scroll_y)
        await pilot.pause()
        assert _screen_text(view)[-1] == "step 00200 | half"
        with log.open("a") as f:
            f.write(" done\n")
        await _until(pilot, lambda: _screen_text(view)[-1] == "step 00200 | half done")

    _run(log, body)


def test_scroll_up_pauses_and_f_resumes(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(100))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 100 and view.scroll_y == view.max_scroll_y)
        await pilot.press("pageup")
        assert not view.following and view.scroll_y < view.max_scroll_y
        assert view.border_subtitle == "paused — press f to follow"
        top = view.scroll_y
        _append(log, range(100, 103))
        await _until(pilot, lambda: view.line_count == 103)
        assert view.border_subtitle == "3 new lines — press f to follow"
        assert view.scroll_y == top  # the user's place is kept
        await pilot.press("f")
        assert view.following and view.scroll_y == view.max_scroll_y
        assert view.border_subtitle == "103 lines"
        _append(log, range(103, 110))
        await _until(pilot, lambda: view.line_count == 110 and view.scroll_y == view.max_scroll_y)

    _run(log, body)


def test_other_ways_to_pause_and_resume(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(100))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 100 and view.scroll_y == view.max_scroll_y)
        await pilot.press("up")
        assert not view.following
        await pilot.press("down")  # back at the bottom: following again
        assert view.following
        await pilot.press("home")
        assert not view.following and view.scroll_y == 0
        _append(log, ["Traceback (most recent call last):\n", "ValueError: boom\n"])
        await _until(pilot, lambda: view.border_subtitle.startswith("2 new lines"))
        assert view.scroll_y == 0
        await pilot.press("end")
        assert view.following and view.scroll_y == view.max_scroll_y
        view.post_message(events.MouseScrollUp(view, 1, 1, 0, -1, 0, False, False, False))
        await _until(pilot, lambda: not view.following)
        await pilot.press("pagedown")
        assert view.following
        await pilot.pause()
        # the error lines are styled apart from the progress lines
        last, error = view.render_line(view.scrollable_content_region.height - 1), view.render_line(
            view.scrollable_content_region.height - 2
        )
        assert last.text.startswith("ValueError: boom") and error.text.startswith("Traceback")
        progress = view.render_line(0)
        assert {s.style for s in list(last)[:1]} != {s.style for s in list(progress)[:1]}

    _run(log, body)


def test_keymap_moves_the_follow_key(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(100))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        app.set_keymap({"log.follow": "g"})
        await _until(pilot, lambda: view.line_count == 100 and view.scroll_y == view.max_scroll_y)
        await pilot.press("pageup")
        assert view.border_subtitle == "paused — press g to follow"
        await pilot.press("g")
        assert view.following and view.scroll_y == view.max_scroll_y

    _run(log, body)


def test_follow_file_switches_files(tmp_path: Path) -> None:
    first, second = tmp_path / "exp1.log", tmp_path / "exp2.log"
    _append(first, range(300))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 300)
        assert view.scroll_y == view.max_scroll_y > 0  # at the end as soon as the lines are taken in
        await pilot.press("home")
        assert not view.following
        view.follow_file(second, "training log of exp 2")
        assert view.border_title == "training log of exp 2" and view.following
        await pilot.pause()
        assert view.line_count == 0 and "no training log yet" in "".join(_screen_text(view))
        _append(second, ["hello from exp 2\n"])
        await _until(pilot, lambda: view.line_count == 1)
        _append(first, range(300, 400))  # the old file no longer matters
        _append(second, range(50))
        await _until(pilot, lambda: view.line_count == 51 and view.scroll_y == view.max_scroll_y)
        assert view.following and view.path == second
        await pilot.pause()
        assert _screen_text(view)[-1] == STEP.format(i=49).rstrip()
        view.follow_file(None)
        await pilot.pause()
        assert view.border_title == "" and "no training log yet" in "".join(_screen_text(view))

    _run(first, body)


def test_empty_state_then_file_appears(tmp_path: Path) -> None:
    log = tmp_path / "later.log"

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await pilot.pause()
        assert "no training log yet" in "".join(_screen_text(view))
        _append(log, range(3))
        await _until(pilot, lambda: view.line_count == 3)
        await pilot.pause()
        assert _screen_text(view)[:3] == [STEP.format(i=i).rstrip() for i in range(3)]

    _run(log, body)


def test_truncated_file_while_paused(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(100))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 100 and view.scroll_y == view.max_scroll_y)
        await pilot.press("pageup", "pageup")
        assert not view.following
        log.write_text("a\nb\nc\n")
        await _until(pilot, lambda: view.line_count == 3)
        await pilot.pause()
        assert view.scroll_y == 0 and view.following and view.border_subtitle == "3 lines"
        assert _screen_text(view)[:4] == ["a", "b", "c", ""]

    _run(log, body)


def test_messages_only_when_the_file_changes(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(10))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 10)
        await pilot.pause(0.3)
        before = list(app.grew)
        assert before == [10]
        await pilot.pause(0.8)  # three polls or so of an unchanged file
        assert app.grew == before
        _append(log, range(10, 12))
        await _until(pilot, lambda: view.line_count == 12 and len(app.grew) == 2)
        assert app.grew == [10, 2]

    _run(log, body)


def test_long_lines_are_truncated_and_scroll_sideways(tmp_path: Path) -> None:
    log = tmp_path / "wide.log"
    _append(log, ["".join(f"{c:04d}" for c in range(300)) + "\n", "short\n"])  # 1200 columns

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 2 and view.allow_horizontal_scroll)
        assert view.virtual_size.width == 512
        width = view.scrollable_content_region.width
        assert len(view.render_line(0).text) == width
        await pilot.press("right")
        assert view.scroll_x == 1
        view.scroll_to(x=view.max_scroll_x, animate=False, immediate=True)
        await pilot.pause()
        text = view.render_line(0).text
        assert text == "".join(f"{c:04d}" for c in range(300))[512 - width : 512]

    _run(log, body)


def test_worker_stops_when_the_view_is_removed(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    _append(log, range(3))

    async def body(app: LogApp, view: LogView, pilot: Pilot) -> None:
        await _until(pilot, lambda: view.line_count == 3)
        workers = [w for w in app.workers if w.group == "logview-tail"]
        assert len(workers) == 1 and workers[0].state == WorkerState.RUNNING
        await view.remove()
        await _until(pilot, lambda: workers[0].is_finished)
        assert workers[0].state in (WorkerState.CANCELLED, WorkerState.SUCCESS)

    _run(log, body)
