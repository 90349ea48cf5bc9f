"""The dashboard's live log pane: follows a training log of any size without loading it.

`LogView` is a Line API widget over `LogIndex` (byte offsets of the lines + a small LRU cache of
decoded lines): only the visible lines are ever read, decoded and styled, so a 1,000,000-line log
costs 8 bytes a line of offsets (up to twice that while the array has spare room) and a repaint costs
one read of a few kilobytes.

Growth: a thread worker calls `LogIndex.refresh()` every `POLL_INTERVAL` seconds and only posts a
`LogView.Grew` message when the file changed; the widget handles it on the UI thread (virtual size,
scroll to the end when following, subtitle).

Follow rules:

- The view *follows* (stays at the last line as lines arrive) whenever it is scrolled to the bottom.
- Any scroll up (keys, mouse wheel, scrollbar) stops following; the border subtitle then says
  "N new lines — press f to follow" (N counts lines that arrived since following stopped).
- `f` or `end` resume following; scrolling back down to the bottom resumes it as well.

Width: lines are never wrapped. Horizontal scrolling reaches the longest line indexed so far, measured
in bytes (an upper bound for ASCII text, so the cheap numpy pass needs no decoding) and capped at
`MAX_COLUMNS` = 512 columns; what lies beyond is truncated.

Styling is cheap and applies to visible lines only: the harness's progress lines
(`step 00012 |  45.2% | loss 3.2104 | ...`) get dim separators, lines containing `Traceback`, `Error`
or `error:` are shown in the error colour. Text selection is off (copy with the terminal's own
selection, or open the log in a pager).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from ...engine.logtail import LogIndex

MAX_COLUMNS = 512
"""Widest horizontal scroll; longer lines are truncated there."""
POLL_INTERVAL = 0.25
"""Seconds between two looks at the file."""
REFRESH_BYTES = 16 * 1024 * 1024
"""Most bytes one refresh indexes, so the worker notices cancellation quickly even on a huge file."""
EMPTY_TEXT = "no training log yet"
FOLLOW_BINDING = Binding("f", "follow", "Follow", id="log.follow")


def _is_error(text: str) -> bool:
    """Lines worth the error colour: tracebacks and error messages."""
    return "Traceback" in text or "Error" in text or "error:" in text


def _is_progress(text: str) -> bool:
    """The harness's progress line: `step 00012 |  45.2% | loss 3.2104 | 12,345 tok/s | remaining 17s`."""
    return text.startswith("step ") and " | " in text


class LogView(ScrollView, can_focus=True):
    """A scrollable, following view of one log file (see the module docstring for the rules)."""

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Up", show=False, id="log.up"),
        Binding("down", "scroll_down", "Down", show=False, id="log.down"),
        Binding("left", "scroll_left", "Left", show=False, id="log.left"),
        Binding("right", "scroll_right", "Right", show=False, id="log.right"),
        Binding("pageup", "page_up", "Page up", show=False, id="log.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="log.page_down"),
        Binding("home", "scroll_home", "Top", show=False, id="log.home"),
        Binding("end", "scroll_end", "End (follow)", show=False, id="log.end"),
        FOLLOW_BINDING,
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"logview--dim", "logview--error", "logview--empty"}

    DEFAULT_CSS = """
    LogView {
        border: solid $border-blurred;
        border-title-align: left;
        border-subtitle-align: right;
        background: $surface;
        color: $text;
        overflow: auto auto;
        &:focus {
            border: solid $border;
        }
        & > .logview--dim {
            color: $text-muted;
        }
        & > .logview--error {
            color: $text-error;
        }
        & > .logview--empty {
            color: $text-muted;
            text-style: italic;
        }
    }
    """

    class Grew(Message):
        """The followed file changed: `count` new complete lines (0: only the last partial line or a reset)."""

        def __init__(self, count: int, index: LogIndex | None = None) -> None:
            super().__init__()
            self.count = count
            self.index = index

    def __init__(
        self,
        path: Path | None = None,
        title: str = "",
        *,
        empty_text: str = EMPTY_TEXT,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.empty_text = empty_text
        self._index: LogIndex | None = None
        self._following = True
        self._paused_at = 0  # line count when following stopped
        self._strips: LRUCache[str, Strip] = LRUCache(1024)  # styled, uncropped strips by line text
        self._styles: tuple[Style, Style, Style, Style] | None = None
        self._set_file(path, title)

    # -- public ---------------------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The file shown (None: nothing to show)."""
        return self._index.path if self._index is not None else None

    @property
    def following(self) -> bool:
        """True while the view sticks to the last line."""
        return self._following

    @property
    def line_count(self) -> int:
        """Lines of the file the view has taken in (as of the last `Grew` handled)."""
        return self.virtual_size.height

    def follow_file(self, path: Path | None, title: str = "") -> None:
        """Show `path` instead (e.g. the next training's log), from a fresh index, following its end."""
        self._set_file(path, title)
        self._strips.clear()
        self.virtual_size = Size(0, 0)
        if self.is_mounted:
            self.scroll_to(0, 0, animate=False, immediate=True)
            self._start_tail()
        self._update_subtitle()
        self.refresh()

    # -- file and worker ------------------------------------------------------------------------------
    def _set_file(self, path: Path | None, title: str) -> None:
        self._index = LogIndex(path) if path is not None else None
        self._following = True
        self._paused_at = 0
        self.border_title = title or (path.name if path is not None else "")
        self.border_subtitle = ""

    def on_mount(self) -> None:
        self._start_tail()

    def _start_tail(self) -> None:
        """(Re)start the worker on the current index; `exclusive` cancels the previous one."""
        if self._index is None:
            self.workers.cancel_group(self, "logview-tail")
        else:
            self._tail(self._index)

    @work(thread=True, exclusive=True, group="logview-tail", name="log tail")
    def _tail(self, index: LogIndex) -> None:
        """Thread: index what the file grew by, tell the widget only when something changed."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            before = index.stamp
            count = index.refresh(max_bytes=REFRESH_BYTES)
            if index.stamp != before:
                self.post_message(self.Grew(count, index))
            if not index.behind:
                worker.cancelled_event.wait(POLL_INTERVAL)

    def on_log_view_grew(self, message: Grew) -> None:
        """UI thread: the file changed; resize the virtual area and keep up with the end if following."""
        if message.index is not self._index:  # from the worker of a previous file
            message.stop()
            return
        self._sync_virtual_size()
        if self._following:
            self._stick_to_end()
            self.call_after_refresh(self._stick_to_end)  # again once layout has placed the scrollbars
        self._update_subtitle()
        self.refresh()

    def _sync_virtual_size(self) -> None:
        """Take in what the worker indexed: one row per line, columns up to the longest line (capped)."""
        index = self._index
        if index is None:
            self.virtual_size = Size(0, 0)
        else:
            self.virtual_size = Size(min(MAX_COLUMNS, index.max_line_bytes), len(index))

    # -- following ------------------------------------------------------------------------------------
    def _stick_to_end(self) -> None:
        """Scroll to the last line if following (forced: the scrollbar may not be laid out yet)."""
        if self._following:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        if self.show_vertical_scrollbar:  # a scrollbar that just appeared keeps the position it had when hidden
            self.vertical_scrollbar.position = self.scroll_y

    def _set_following(self, following: bool) -> None:
        if following == self._following:
            return
        self._following = following
        if not following:
            self._paused_at = self.line_count
        self._update_subtitle()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """At the bottom: follow. Moved up (key, wheel, scrollbar): stop following."""
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:
            self._set_following(True)
        elif new_value < old_value:
            self._set_following(False)

    def on_resize(self, event: Resize) -> None:
        """A new height moves the bottom: stay there when following."""
        self._stick_to_end()

    def _update_subtitle(self) -> None:
        n = self.line_count
        if self._index is None or n == 0:
            self.border_subtitle = ""
        elif self._following:
            self.border_subtitle = f"{n:,} line{'s' if n != 1 else ''}"
        else:
            new = max(0, n - self._paused_at)
            key = self._follow_key()
            if new:
                self.border_subtitle = f"{new:,} new line{'s' if new != 1 else ''} — press {key} to follow"
            else:
                self.border_subtitle = f"paused — press {key} to follow"

    def _follow_key(self) -> str:
        """The key that resumes following now: the `log.follow` binding's, or the user keymap's for it."""
        key = FOLLOW_BINDING.key
        if self.is_mounted:
            keymap: dict[str, str] = getattr(self.app, "_keymap", {}) or {}  # Textual keeps no public getter
            key = (keymap.get(FOLLOW_BINDING.id or "") or key).split(",")[0].strip()
            return self.app.get_key_display(Binding(key, FOLLOW_BINDING.action))
        return key

    # -- actions --------------------------------------------------------------------------------------
    def action_follow(self) -> None:
        """Jump to the last line and follow new ones."""
        self._set_following(True)
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self._update_subtitle()

    def action_scroll_end(self) -> None:
        """`end` is the same as `f`: to the bottom, following."""
        self.action_follow()

    def _scroll_lines(self, y: float) -> None:
        """Scroll to line `y` now (forced: the scrollbar may not be laid out yet); skip if nothing scrolls."""
        if self.max_scroll_y <= 0:
            raise SkipAction()
        self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def action_scroll_home(self) -> None:
        self._scroll_lines(0)

    def action_scroll_up(self) -> None:
        self._scroll_lines(self.scroll_y - 1)

    def action_scroll_down(self) -> None:
        self._scroll_lines(self.scroll_y + 1)

    def action_page_up(self) -> None:
        self._scroll_lines(self.scroll_y - self.scrollable_content_region.height)

    def action_page_down(self) -> None:
        self._scroll_lines(self.scroll_y + self.scrollable_content_region.height)

    # -- rendering ------------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        """Theme or focus changed: the cached strips carry old colours."""
        super().notify_style_update()
        self._styles = None
        self._strips.clear()

    def _line_styles(self) -> tuple[Style, Style, Style, Style]:
        """Base, dim, error and empty-state styles (cached until the next style update)."""
        if self._styles is None:
            base = self.rich_style
            self._styles = (
                base,
                base + self.get_component_rich_style("logview--dim", partial=True),
                base + self.get_component_rich_style("logview--error", partial=True),
                base + self.get_component_rich_style("logview--empty", partial=True),
            )
        return self._styles

    def render_lines(self, crop: Region) -> list[Strip]:
        """Read the visible lines with one read before they are rendered one by one."""
        if self._index is not None:
            top = self.scroll_offset.y
            self._index.lines(top, top + self.scrollable_content_region.height)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Line `y` of the viewport: a log line cropped to the view, or blank / the empty-state text."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self._line_styles()[0]
        index = self._index
        count = self.line_count
        if count == 0:
            return self._empty_line(y, width)
        i = scroll_y + y
        if index is None or i >= count:
            return Strip.blank(width, base)
        text = index.lines(i, i + 1)  # empty if the worker just reset the index
        if not text:
            return Strip.blank(width, base)
        strip = self._styled(text[0])
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _empty_line(self, y: int, width: int) -> Strip:
        base, _, _, empty = self._line_styles()
        if y != self.scrollable_content_region.height // 2 or not self.empty_text:
            return Strip.blank(width, base)
        text = self.empty_text[:width]
        left = max(0, (width - cell_len(text)) // 2)
        return Strip([Segment(" " * left, base), Segment(text, empty)]).extend_cell_length(width, base)

    def _styled(self, text: str) -> Strip:
        """One whole line as a styled strip (at most MAX_COLUMNS cells), cached by its text."""
        strip = self._strips.get(text)
        if strip is None:
            base, dim, error, _ = self._line_styles()
            if _is_error(text):
                segments = [Segment(text, error)]
            elif _is_progress(text):
                segments = []
                for k, part in enumerate(text.split("|")):
                    if k:
                        segments.append(Segment("|", dim))
                    segments.append(Segment(part, base))
            else:
                segments = [Segment(text, base)]
            strip = Strip(segments)
            if strip.cell_length > MAX_COLUMNS:
                strip = strip.crop(0, MAX_COLUMNS)
            self._strips[text] = strip
        return strip
