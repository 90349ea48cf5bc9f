"""Progress reporting for long operations, independent of any UI.

Library code takes a ``Progress`` and calls ``progress.task(description, total, unit)`` which returns a
handle with ``update(n)`` and ``close()`` (also a context manager). The CLI passes ``TqdmProgress``
(bars on stderr); tests and headless callers can pass ``NullProgress`` or ``RecordingProgress``.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Task(Protocol):
    def update(self, n: float = 1) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Task": ...
    def __exit__(self, *exc: Any) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> Task: ...
    def message(self, text: str) -> None: ...


class _NullTask:
    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NullTask":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullProgress:
    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> Task:
        return _NullTask()

    def message(self, text: str) -> None:
        pass


class _RecordedTask(_NullTask):
    def __init__(self, owner: "RecordingProgress", description: str, total: float | None, initial: float) -> None:
        self.owner, self.description, self.total, self.done = owner, description, total, initial
        self.closed = False

    def update(self, n: float = 1) -> None:
        self.done += n

    def close(self) -> None:
        self.closed = True


class RecordingProgress:
    """Keeps every task and message, for tests."""

    def __init__(self) -> None:
        self.tasks: list[_RecordedTask] = []
        self.messages: list[str] = []

    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> Task:
        t = _RecordedTask(self, description, total, initial)
        self.tasks.append(t)
        return t

    def message(self, text: str) -> None:
        self.messages.append(text)


class TqdmProgress:
    """Progress bars on stderr through tqdm (quiet bars when stderr is not a terminal)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0) -> Task:
        from tqdm import tqdm

        scale = unit in ("B", "bytes")
        return tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit="B" if scale else unit,
            unit_scale=scale,
            unit_divisor=1024 if scale else 1000,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=0.5 if self.stream.isatty() else 5.0,
            leave=True,
        )

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
