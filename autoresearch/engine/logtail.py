"""A line index over a growing text file, for showing a training log that can reach millions of lines.

`LogIndex` keeps only the byte offset where each line starts (one int64 per line, in a numpy array
that doubles when full) and a small LRU cache of decoded lines, so a viewer can jump to any line and
repaint a screenful with one seek + read, whatever the size of the file. `refresh()` reads just the
bytes appended since the last call, in chunks, and finds newlines with numpy. A file that shrinks or
is replaced (new inode) is indexed again from scratch; a missing file is an empty log.

Lines are returned ready to display: decoded as UTF-8 (bad bytes replaced), without the newline, with
`\\r` progress-bar overwrites resolved (only the text after the last `\\r` is kept), ANSI escape
sequences removed, tabs expanded, other control characters replaced by U+FFFD, and at most
`max_line_chars` characters long.

Thread-safe: the UI thread reads lines while a worker thread calls `refresh()`. File I/O during a
refresh happens outside the main lock, which is only taken to publish each chunk's results.
No UI imports here: the engine and tests use it directly.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np

CHUNK_BYTES = 1024 * 1024
"""How much `refresh()` reads at a time."""
DEFAULT_CACHE_LINES = 2_000
"""Decoded lines kept in the LRU cache (a few screens of scrolling)."""
DEFAULT_MAX_LINE_CHARS = 4_096
"""Longest decoded line; a display never needs more (the view scrolls at most 512 columns)."""
MAX_RANGE_BYTES = 1024 * 1024
"""`lines()` reads a range with one read up to this size, else line by line (some lines are huge)."""

_NEWLINE = 10
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(raw: bytes, max_chars: int = DEFAULT_MAX_LINE_CHARS) -> str:
    """Turn the raw bytes of one line (with or without its newline) into the text a terminal would show."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):  # CRLF, or a progress bar that ends with a carriage return
        raw = raw[:-1]
    cr = raw.rfind(b"\r")  # safe on bytes: 0x0D never occurs inside a UTF-8 multibyte sequence
    if cr >= 0:
        raw = raw[cr + 1 :]
    text = raw.decode("utf-8", errors="replace")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\t" in text:
        text = text[: max_chars * 2].expandtabs()
    if _CONTROL.search(text):
        text = _CONTROL.sub("\ufffd", text)
    return text[:max_chars]


class LogIndex:
    """Byte offsets of the lines of one (growing) text file, plus a bounded cache of decoded lines.

    Line `i` spans bytes `starts[i]` up to `starts[i + 1]` (its newline included). After the last
    newline, bytes seen so far that do not end in a newline yet form a *partial* last line: it counts
    in `len()` and is shown, but never cached, since it is read again once it grows or completes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        cache_lines: int = DEFAULT_CACHE_LINES,
        chunk_bytes: int = CHUNK_BYTES,
        max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._cache_lines = max(1, cache_lines)
        self._chunk_bytes = max(1, chunk_bytes)
        self._max_line_chars = max(1, max_line_chars)
        self._lock = threading.Lock()  # guards the index state and the cache
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._generation = 0
        self._clear()

    # -- state ---------------------------------------------------------------------------------------
    def _clear(self) -> None:
        """Forget everything indexed (caller holds the lock, or nobody else can see the object yet)."""
        self._starts = np.zeros(1024, dtype=np.int64)  # _starts[0] = 0: the first line starts the file
        self._count = 1  # entries used in _starts: complete lines + 1
        self._size = 0  # bytes scanned for newlines (up to the end of the partial line)
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the indexed file
        self._max_complete = 0  # longest complete line, in bytes (without its newline)
        self._known_size = 0  # file size seen by the last refresh
        self._cache.clear()
        self._generation += 1

    def reset(self) -> None:
        """Drop the index; the next `refresh()` reads the file from the start."""
        with self._lock:
            self._clear()

    @property
    def path(self) -> Path | None:
        """The file this index follows (None: nothing to follow, always empty)."""
        return self._path

    @property
    def _end(self) -> int:
        """Byte offset just after the last newline: where the partial line (if any) starts."""
        return int(self._starts[self._count - 1])

    def __len__(self) -> int:
        """Lines known, a trailing partial line included."""
        with self._lock:
            return self._len()

    def _len(self) -> int:
        return self._count - 1 + (1 if self._size > self._end else 0)

    @property
    def complete_lines(self) -> int:
        """Lines that end with a newline."""
        with self._lock:
            return self._count - 1

    @property
    def size(self) -> int:
        """Bytes of the file indexed so far."""
        with self._lock:
            return self._size

    @property
    def stamp(self) -> tuple[int, int]:
        """Changes whenever what the index shows changes (new bytes, or a reset): cheap change detection."""
        with self._lock:
            return self._generation, self._size

    @property
    def max_line_bytes(self) -> int:
        """Length in bytes of the longest line indexed so far: an upper bound on its width for ASCII text."""
        with self._lock:
            return max(self._max_complete, self._size - self._end)

    @property
    def cached_lines(self) -> int:
        """Decoded lines held in the cache now (at most `cache_lines`)."""
        with self._lock:
            return len(self._cache)

    @property
    def nbytes(self) -> int:
        """Memory held by the offsets array: the only structure that grows with the file."""
        return int(self._starts.nbytes)

    # -- indexing ------------------------------------------------------------------------------------
    def refresh(self, max_bytes: int | None = None) -> int:
        """Index the bytes appended since the last call; return how many new lines were completed.

        `max_bytes` bounds the work of one call (a caller that wants to stay responsive calls again
        while `behind` is true). A missing or unreadable file reads as empty; a file that shrank or was
        replaced since the last call is indexed again from its start.
        """
        if self._path is None:
            return 0
        with self._refresh_lock:
            try:
                with open(self._path, "rb") as f:
                    return self._refresh_from(f, max_bytes)
            except FileNotFoundError:
                self._reset_if_indexed()
                return 0
            except OSError:  # unreadable for now: keep what is indexed
                return 0

    @property
    def behind(self) -> bool:
        """True when the file had more bytes than a size-limited `refresh()` indexed."""
        with self._lock:
            return self._known_size > self._size

    def _reset_if_indexed(self) -> None:
        with self._lock:
            if self._identity is not None or self._size:
                self._clear()

    def _refresh_from(self, f: BinaryIO, max_bytes: int | None) -> int:
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            if self._identity is not None and (identity != self._identity or st.st_size < self._size):
                self._clear()
            elif self._identity is not None and not self._still_ends_lines(f):
                self._clear()  # truncated and rewritten past the old size between two refreshes
            self._identity = identity
            self._known_size = st.st_size
            generation, pos = self._generation, self._size
        target = st.st_size if max_bytes is None else min(st.st_size, pos + max(1, max_bytes))
        completed = 0
        f.seek(pos)
        while pos < target:
            chunk = f.read(min(self._chunk_bytes, target - pos))
            if not chunk:
                break
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE)
            with self._lock:
                if self._generation != generation:  # reset meanwhile: this data belongs to the old file
                    return 0
                self._append_starts(newlines + (pos + 1))
                self._size = pos + len(chunk)
            pos += len(chunk)
            completed += len(newlines)
        return completed

    def _still_ends_lines(self, f: BinaryIO) -> bool:
        """Is the byte before the partial line still a newline? (cheap check for an in-place rewrite)"""
        end = self._end
        if end == 0:
            return True
        f.seek(end - 1)
        return f.read(1) == b"\n"

    def _append_starts(self, new: np.ndarray) -> None:
        """Append line starts (amortized doubling) and track the longest line; caller holds the lock."""
        if not len(new):
            return
        needed = self._count + len(new)
        if needed > len(self._starts):
            grown = np.empty(max(needed, 2 * len(self._starts)), dtype=np.int64)
            grown[: self._count] = self._starts[: self._count]
            self._starts = grown
        self._starts[self._count : needed] = new
        lengths = np.diff(self._starts[self._count - 1 : needed]) - 1
        self._max_complete = max(self._max_complete, int(lengths.max()))
        self._count = needed

    # -- reading -------------------------------------------------------------------------------------
    def line(self, i: int) -> str:
        """Line `i` (0-based; negative counts from the end), ready to display; IndexError past the end."""
        with self._lock:
            n = self._len()
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise IndexError(f"line {i} out of range ({n} lines)")
            return self._lines(j, j + 1)[0]

    def lines(self, start: int, stop: int) -> list[str]:
        """Lines `start` up to `stop` (clipped to what exists), read with one seek + read where possible."""
        with self._lock:
            n = self._len()
            start, stop = max(0, start), min(stop, n)
            if start >= stop:
                return []
            return self._lines(start, stop)

    def _lines(self, start: int, stop: int) -> list[str]:
        """Serve from the cache, read what is missing (caller holds the lock and has clipped the range)."""
        cache = self._cache
        out: list[str | None] = []
        missing: list[int] = []
        for i in range(start, stop):
            text = cache.get(i)
            if text is None:
                missing.append(i)
            else:
                cache.move_to_end(i)
            out.append(text)
        if missing:
            lo = missing[0]
            read = self._read(lo, missing[-1] + 1, set(missing))
            for i in missing:
                text = read[i - lo]
                out[i - start] = text
                if i < self._count - 1:  # complete lines only: the partial one may still change
                    cache[i] = text
            while len(cache) > self._cache_lines:
                cache.popitem(last=False)
        return out  # type: ignore[return-value]  # every None was filled

    def _span(self, i: int) -> tuple[int, int]:
        """Byte range of line `i`, its newline included."""
        a = int(self._starts[i])
        b = int(self._starts[i + 1]) if i + 1 < self._count else self._size
        return a, b

    def _read(self, lo: int, hi: int, wanted: set[int]) -> list[str]:
        """Decode lines lo..hi-1 (only those in `wanted` really, the others are cached): one read if small."""
        assert self._path is not None
        begin, end = self._span(lo)[0], self._span(hi - 1)[1]
        out: list[str] = []
        try:
            with open(self._path, "rb") as f:
                if end - begin <= MAX_RANGE_BYTES:
                    f.seek(begin)
                    data = f.read(end - begin)
                    for i in range(lo, hi):
                        a, b = self._span(i)
                        out.append(clean_line(data[a - begin : b - begin], self._max_line_chars) if i in wanted else "")
                else:
                    for i in range(lo, hi):
                        out.append(self._read_one(f, *self._span(i)) if i in wanted else "")
        except OSError:
            return [""] * (hi - lo)
        return out

    def _read_one(self, f: BinaryIO, a: int, b: int) -> str:
        """One line; a huge one is read only at its head and tail (a `\\r` progress bar shows its tail)."""
        limit = 4 * self._max_line_chars
        if b - a <= 2 * limit:
            f.seek(a)
            return clean_line(f.read(b - a), self._max_line_chars)
        f.seek(b - limit)
        tail = f.read(limit)
        if b"\r" in tail.rstrip(b"\r\n"):
            return clean_line(tail, self._max_line_chars)
        f.seek(a)
        return clean_line(f.read(limit), self._max_line_chars)
