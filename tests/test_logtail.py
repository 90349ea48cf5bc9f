"""LogIndex: line offsets of a growing log file, bounded cache, resets, and display clean-up of lines."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from autoresearch.engine import logtail
from autoresearch.engine.logtail import LogIndex, clean_line

pytestmark = pytest.mark.timeout(60)


def _append(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    with path.open("ab") as f:
        f.write(data)


def test_growing_file_indexes_only_new_bytes(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("one\ntwo\nthree\n")
    index = LogIndex(log)
    assert index.refresh() == 3
    assert len(index) == 3 and index.complete_lines == 3
    assert index.lines(0, 3) == ["one", "two", "three"]
    assert index.refresh() == 0
    _append(log, "four\nfive\n")
    assert index.refresh() == 2
    assert len(index) == 5
    assert index.line(3) == "four" and index.line(-1) == "five"
    assert index.lines(3, 100) == ["four", "five"]
    assert index.lines(7, 9) == [] and index.lines(-5, 1) == ["one"]
    with pytest.raises(IndexError):
        index.line(5)


def test_refresh_reads_from_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "train.log"
    log.write_text("x" * 99 + "\n")
    index = LogIndex(log)
    index.refresh()
    _append(log, "tail\n")
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, f):  # type: ignore[no-untyped-def]
            self._f = f

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self._f, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self._f.close()

        def read(self, n: int = -1) -> bytes:
            data = self._f.read(n)
            reads.append(len(data))
            return data

    monkeypatch.setattr(logtail, "open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False)
    assert index.refresh() == 1
    assert sum(reads) == 1 + len("tail\n")  # one byte checks the last newline; the first 100 are not read again


def test_partial_last_line_is_shown_then_completed(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("done\nhalf")
    index = LogIndex(log)
    assert index.refresh() == 1
    assert len(index) == 2 and index.complete_lines == 1
    assert index.line(1) == "half"
    _append(log, " more")
    assert index.refresh() == 0
    assert index.line(1) == "half more"  # not served from a stale cache
    _append(log, " end\nnext")
    assert index.refresh() == 1
    assert index.lines(0, 5) == ["done", "half more end", "next"]


def test_truncated_file_is_indexed_again(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"old line {i}\n" for i in range(10)))
    index = LogIndex(log)
    index.refresh()
    assert index.line(0) == "old line 0"  # cached
    log.write_text("new\n")
    index.refresh()
    assert len(index) == 1 and index.line(0) == "new"


def test_replaced_file_is_indexed_again(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("a\nb\n")
    index = LogIndex(log)
    index.refresh()
    assert index.lines(0, 2) == ["a", "b"]
    other = tmp_path / "next.log"
    other.write_text("first\nsecond\nthird\n")  # larger than the old file: only the inode tells
    os.replace(other, log)
    assert index.refresh() == 3
    assert index.lines(0, 5) == ["first", "second", "third"]


def test_rewritten_in_place_past_old_size_is_indexed_again(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("ab\ncd\n")
    index = LogIndex(log)
    index.refresh()
    with log.open("r+b") as f:  # same inode, truncated and rewritten beyond the old size
        f.truncate(0)
        f.write(b"abcdefgh\nxyz\n")
    index.refresh()
    assert index.lines(0, 5) == ["abcdefgh", "xyz"]


def test_missing_file_is_empty_and_can_appear_and_vanish(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    index = LogIndex(log)
    assert index.refresh() == 0 and len(index) == 0 and index.lines(0, 10) == []
    log.write_text("hello\n")
    assert index.refresh() == 1 and index.line(0) == "hello"
    log.unlink()
    assert index.refresh() == 0 and len(index) == 0
    assert LogIndex(None).refresh() == 0 and len(LogIndex(None)) == 0


def test_carriage_returns_tabs_and_escapes() -> None:
    assert clean_line(b" 10%\r 20%\r 30%\n") == " 30%"
    assert clean_line(b"windows\r\n") == "windows"
    assert clean_line(b"bar 50%\r") == "bar 50%"  # a trailing CR alone does not blank the line
    assert clean_line(b"a\tb\n") == "a       b"
    assert clean_line(b"\x1b[31mred\x1b[0m text\n") == "red text"
    assert clean_line(b"bell\x07\n") == "bell\ufffd"
    assert clean_line(b"bad \xff byte\n") == "bad \ufffd byte"
    assert clean_line(b"x" * 50, max_chars=10) == "x" * 10


def test_carriage_returns_in_a_file(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"epoch 1\n 10%|#   \r 60%|###### \r100%|##########\nnext\r\ndl 5%\r dl 9%")
    index = LogIndex(log)
    index.refresh()
    assert index.lines(0, 10) == ["epoch 1", "100%|##########", "next", " dl 9%"]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_unicode_split_across_chunks(tmp_path: Path, chunk_bytes: int) -> None:
    lines = ["héllo wörld", "€uro 😀 emoji", "", "日本語のログ", "plain"]
    log = tmp_path / "u.log"
    log.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    index = LogIndex(log, chunk_bytes=chunk_bytes)
    assert index.refresh() == len(lines)
    assert index.lines(0, 10) == lines
    assert [index.line(i) for i in range(len(lines))] == lines


def test_limited_refresh_catches_up(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"{i:09d}\n" for i in range(1000)))  # 10 bytes a line
    index = LogIndex(log, chunk_bytes=256)
    assert index.refresh(max_bytes=2500) == 250
    assert index.behind
    total = 250
    while index.behind:
        total += index.refresh(max_bytes=2500)
    assert total == 1000 and len(index) == 1000
    assert index.line(999) == "000000999"


def test_cache_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    index = LogIndex(log, cache_lines=50)
    index.refresh()
    for i in range(0, 5000, 7):
        assert index.line(i) == f"line {i}"
    for start in range(0, 5000, 40):
        assert index.lines(start, start + 40) == [f"line {i}" for i in range(start, min(5000, start + 40))]
    assert index.cached_lines <= 50
    assert index.max_line_bytes == len("line 4999")


def test_offsets_are_the_only_growth(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    n = 200_000
    log.write_text("".join(f"step {i:06d}\n" for i in range(n)))
    index = LogIndex(log, chunk_bytes=64 * 1024)
    assert index.refresh() == n
    assert index.nbytes <= 2 * 8 * (n + 1)  # amortized doubling of an int64 array
    assert index.line(n - 1) == f"step {n - 1:06d}" and index.line(12345) == "step 012345"


def test_lines_reads_one_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    index = LogIndex(log)
    index.refresh()
    reads: list[int] = []
    real_open = open

    def spy_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_open(*args, **kwargs)
        real_read = f.read

        def read(n: int = -1) -> bytes:
            reads.append(n)
            return real_read(n)

        f.read = read  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(logtail, "open", spy_open, raising=False)
    assert index.lines(500, 540) == [f"line {i}" for i in range(500, 540)]
    assert len(reads) == 1
    assert index.lines(500, 540)[0] == "line 500" and len(reads) == 1  # second time from the cache


def test_huge_lines_are_read_in_part(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    bar = b"".join(b"\r%3d%%|" % (i % 101) + b"#" * 40 for i in range(20_000))  # ~1 MB, no newline between
    log.write_bytes(b"before\n" + bar + b"\n" + b"y" * 2_000_000 + b"\nafter\n")
    index = LogIndex(log, max_line_chars=1000)
    index.refresh()
    assert len(index) == 4
    lines = index.lines(0, 4)
    assert lines[0] == "before" and lines[3] == "after"
    assert lines[1] == f"{19_999 % 101:3d}%|" + "#" * 40
    assert lines[2] == "y" * 1000


def test_concurrent_growth_and_reads(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    index = LogIndex(log, chunk_bytes=1024, cache_lines=100)
    done = threading.Event()
    n = 20_000

    def writer() -> None:
        with log.open("a") as f:
            for i in range(n):
                f.write(f"step {i:05d} | loss 1.0\n")
                if i % 500 == 0:
                    f.flush()
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = 0
    while not done.is_set() or index.complete_lines < n:
        index.refresh(max_bytes=50_000)
        count = len(index)
        assert count >= seen
        seen = count
        for text in index.lines(max(0, count - 30), count - 1):  # complete lines only
            assert text.startswith("step ") and text.endswith("loss 1.0")
    thread.join()
    assert index.complete_lines == n and index.line(n - 1) == f"step {n - 1:05d} | loss 1.0"
