"""Long operations in a worker thread (a dataset's download and preparation, an Ollama pull) report progress to
the screen as messages: the library's :class:`~autoresearch.progress.Progress`, posted about ten times a second."""

from __future__ import annotations

import time
from typing import Any, Callable

from textual.message import Message


class ProgressUpdate(Message):
    """``done`` of ``total`` (None: unknown) for ``what`` (``key`` names the operation: prepare, pull)."""

    def __init__(self, key: str, what: str, done: float, total: float | None, text: str = "") -> None:
        super().__init__()
        self.key = key
        self.what = what
        self.done = done
        self.total = total
        self.text = text  # a line said along the way ("downloading ...")


class _Task:
    def __init__(self, owner: "PostingProgress", what: str, total: float | None, initial: float) -> None:
        self.owner, self.what, self.total, self.done = owner, what, total, initial
        self._sent = 0.0
        owner.post(ProgressUpdate(owner.key, what, initial, total))

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._sent >= self.owner.interval:
            self._sent = now
            self.owner.post(ProgressUpdate(self.owner.key, self.what, self.done, self.total))

    def close(self) -> None:
        self.owner.post(ProgressUpdate(self.owner.key, self.what, self.done, self.total))

    def __enter__(self) -> "_Task":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PostingProgress:
    def __init__(self, post: Callable[[Message], object], key: str, interval: float = 0.1) -> None:
        self.post = post
        self.key = key
        self.interval = interval

    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> _Task:
        return _Task(self, description, total, initial)

    def message(self, text: str) -> None:
        self.post(ProgressUpdate(self.key, "", 0, None, text))
