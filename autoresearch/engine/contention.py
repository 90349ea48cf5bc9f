"""Was the machine busy with something else during a training? (The budget is wall-clock: a backup, an update or a
second run that takes the CPU makes the change look worse, or the baseline look noisier, for no reason of its own.)

:class:`ContentionMonitor` measures, between ``start()`` and ``stop()``, the CPU time of the whole machine minus that
of this engine's own process tree (the training, the scorer and its serving processes, the data server) and of
the run's clients (the app watching it): what the other processes took, as cores and as a share of the machine. Processes that came and went in between are counted
too (the figure comes from the machine's totals, not from a list of processes); the busiest others are named.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

from .gpuload import GpuSampler


@dataclass(frozen=True)
class Contention:
    others_cores: float  # mean CPU cores the other processes used
    cores: int
    seconds: float
    busiest: list[tuple[str, float]] = field(default_factory=list)  # ("name (pid N)", cores), busiest first
    slow: str = ""  # the second signal: slower than the same script's earlier trainings (see slower_than_before)
    gpu_share: float = 0.0  # other processes' share of the busiest NVIDIA GPU's SMs, mean over the samples (gpuload)
    gpu_busiest: list[tuple[str, float]] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Of the whole machine's CPU (0..1)."""
        return self.others_cores / self.cores if self.cores else 0.0

    def busier(self, threshold: float) -> bool:
        """Whether the others took more than ``threshold`` of the CPU or of the GPU."""
        return self.share > threshold or self.gpu_share > threshold

    def words(self) -> str:
        names = ", ".join(f"{n} {c:.1f}" for n, c in self.busiest[:3])
        parts = [f"other processes used {self.others_cores:.1f} of {self.cores} cores" + (f" ({names})" if names else "")]
        if self.gpu_share >= 0.05:
            gpu = ", ".join(f"{n} {100 * s:.0f}%" for n, s in self.gpu_busiest)
            parts.insert(0, f"other processes used {100 * self.gpu_share:.0f}% of the GPU" + (f" ({gpu})" if gpu else ""))
        if self.slow:
            parts.insert(0, self.slow)
        return "; ".join(parts)


SLOW_RATIO = 0.7  # a training this much slower than the same script's earlier ones ran on a machine that was not itself


def slower_than_before(tokens_per_second: float | None, earlier: list[float], ratio: float = SLOW_RATIO) -> str:
    """The second signal of a busy machine, for what the CPU figure cannot see (another process on the GPU, a
    throttled chip): the same script, with another seed, trains at the same speed. '' when it is not slower than
    ``ratio`` times the median of its ``earlier`` trainings' tokens per second (or there are none)."""
    earlier = sorted(x for x in earlier if x and x > 0)
    if not tokens_per_second or not earlier:
        return ""
    median = earlier[len(earlier) // 2] if len(earlier) % 2 else (earlier[len(earlier) // 2 - 1] + earlier[len(earlier) // 2]) / 2
    if tokens_per_second >= ratio * median:
        return ""
    n = len(earlier)
    return (f"trained at {tokens_per_second:,.0f} tok/s, {tokens_per_second / median:.2f}x of the same script's "
            f"{'earlier training' if n == 1 else f'{n} earlier trainings'} ({median:,.0f} tok/s)")


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0)


def _tree_cpu(root: int) -> dict[tuple[int, float], float]:
    """(pid, start time) -> own CPU seconds of every process in the tree now (children's times left out: a child
    is counted by itself while it lives, and its time would be counted twice once its parent reaps it)."""
    try:
        procs = [psutil.Process(root)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return {}
    out = {}
    for p in procs:
        try:
            with p.oneshot():
                c = p.cpu_times()
                out[(p.pid, p.create_time())] = c.user + c.system
        except psutil.Error:
            pass
    return out


def is_client(cmdline: list[str]) -> bool:
    """A client of a run (the app, `watch`, `status`): a person watching is not contention. Another engine, or its
    training and scorer, is."""
    text = " ".join(cmdline)
    return "autoresearch" in text and not any(w in text for w in ("--headless", "autoresearch.harness", "train.py"))


def _per_process(exclude: set[int]) -> dict[int, tuple[str, float, bool]]:
    """pid -> (name, CPU seconds so far, is a client) of every process outside ``exclude``."""
    out = {}
    for p in psutil.process_iter(["name", "cpu_times", "cmdline"]):
        if p.pid in exclude or p.info["cpu_times"] is None:
            continue
        c = p.info["cpu_times"]
        out[p.pid] = (p.info["name"] or "?", c.user + c.system, is_client(p.info["cmdline"] or []))
    return out


def _tree_pids(root: int) -> set[int]:
    try:
        proc = psutil.Process(root)
        return {root, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return {root}


class ContentionMonitor:
    """CPU the rest of the machine used while this engine's tree (rooted at ``root``) trained.

    The tree is sampled every ``interval`` seconds from a thread, and every process seen in it keeps its last CPU
    figure: a scorer's serving process that is killed and reaped by init still counts as ours (only what a
    process did after its last sample, or one that lived less than an interval, is missed, and shows as others')."""

    def __init__(self, root: int | None = None, interval: float = 0.5, gpu_interval: float = 5.0) -> None:
        self.root = root or os.getpid()
        self.gpu = GpuSampler()  # (nothing where there is no nvidia-smi)
        self.gpu_interval = gpu_interval
        self.cores = psutil.cpu_count() or 1
        self.interval = interval
        self._seen: dict[tuple[int, float], float] = {}
        self._first: dict[tuple[int, float], float] = {}
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the sampler thread updates _seen; load_so_far reads it from another

    def _sample(self) -> None:
        sample = _tree_cpu(self.root)
        with self._lock:
            self._seen.update(sample)

    def load_so_far(self) -> float:
        """The other processes' share of the machine since start() (0..1), from the samples so far (the run's
        clients are not told apart here: a rough figure while the training runs, see stop() for the real one)."""
        if self._thread is None or self._done.is_set():
            return 0.0
        seconds = time.monotonic() - self._t0
        if seconds < 4 * self.interval:
            return 0.0
        busy = _busy_seconds() - self._busy0
        with self._lock:
            tree = sum(cpu - self._first.get(key, 0.0) for key, cpu in self._seen.items())
        return max(0.0, min(1.0, (busy - tree) / seconds / self.cores))

    def stretch(self, most: float = 4.0) -> float:
        """How much longer than usual a training may take on the machine as loaded so far: 1 / (the share left to
        it), at most ``most`` (a training's deadline is stretched by this: a busy machine's slow start is not the
        change's timeout)."""
        return min(most, 1.0 / max(1.0 / most, 1.0 - self.load_so_far()))

    def _run(self) -> None:
        gpu_at = time.monotonic()
        while not self._done.wait(self.interval):
            self._sample()
            if self.gpu.available and time.monotonic() - gpu_at >= self.gpu_interval:
                gpu_at = time.monotonic()
                self.gpu.sample(_tree_pids(self.root))

    def start(self) -> "ContentionMonitor":
        self._t0 = time.monotonic()
        self._busy0 = _busy_seconds()
        self._first = _tree_cpu(self.root)
        self._seen = dict(self._first)
        self._others0 = _per_process(_tree_pids(self.root))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Contention:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()
        seconds = max(time.monotonic() - self._t0, 1e-6)
        busy = _busy_seconds() - self._busy0
        tree = sum(cpu - self._first.get(key, 0.0) for key, cpu in self._seen.items())
        now = _per_process(_tree_pids(self.root) | {pid for pid, _ in self._seen})
        clients = sum(max(0.0, cpu - self._others0[pid][1]) for pid, (_, cpu, client) in now.items()
                      if client and pid in self._others0)
        others = max(0.0, busy - tree - clients)
        deltas = [(f"{name} (pid {pid})", (cpu - self._others0[pid][1]) / seconds)
                  for pid, (name, cpu, client) in now.items()
                  if not client and pid in self._others0 and cpu > self._others0[pid][1]]
        busiest = sorted((d for d in deltas if d[1] >= 0.05), key=lambda d: -d[1])[:5]
        if self.gpu.available and not self.gpu.samples:
            self.gpu.sample(_tree_pids(self.root))  # a training shorter than the GPU interval: one sample at its end
        return Contention(others_cores=others / seconds, cores=self.cores, seconds=seconds, busiest=busiest,
                          gpu_share=self.gpu.share(), gpu_busiest=self.gpu.busiest())


def wait_for_quiet(threshold: float, *, window: float = 5.0, windows: int = 2, limit: float = 1800.0,
                   keep_waiting: Callable[[], bool] | None = None, root: int | None = None) -> Contention | None:
    """Wait until the others' share stays below ``threshold`` for ``windows`` windows in a row; the last window's
    measurement, or None when ``limit`` seconds passed (or ``keep_waiting()`` said stop) first."""
    end = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < end:
        if keep_waiting is not None and not keep_waiting():
            return None
        monitor = ContentionMonitor(root).start()
        time.sleep(window)
        seen = monitor.stop()
        quiet = quiet + 1 if seen.share < threshold else 0
        if quiet >= windows:
            return seen
    return None
