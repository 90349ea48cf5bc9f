"""Other processes on an NVIDIA GPU while a training runs: what the CPU figure of contention.py cannot see (a
second training, a game, a local LLM still generating on the GPU).

``nvidia-smi pmon -c 1 -s u`` gives each compute process's share of the streaming multiprocessors (``sm`` %) per
GPU; the processes of the engine's own tree are left out. Sampled every few seconds from the contention
monitor's thread where ``nvidia-smi`` exists; nothing at all elsewhere (Apple GPUs, CPUs).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuProcess:
    gpu: int
    pid: int
    sm_percent: float
    name: str


def parse_pmon(text: str) -> list[GpuProcess]:
    """The processes of ``nvidia-smi pmon -s u`` output (columns found from its header: drivers add some)."""
    columns: list[str] = []
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            if not columns and "pid" in line.split():
                columns = line.lstrip("#").split()
            continue
        parts = line.split()
        if not columns or len(parts) < len(columns):
            continue
        row = dict(zip(columns, parts))
        try:
            pid, gpu = int(row.get("pid", "-")), int(row.get("gpu", "0"))
            sm = float(row.get("sm", "-"))
        except ValueError:  # '-': no process on that GPU, or no figure for it
            continue
        out.append(GpuProcess(gpu, pid, sm, row.get("command", "?")))
    return out


class GpuSampler:
    """Others' share of the busiest GPU, sample by sample (``nvidia-smi`` asked each time)."""

    def __init__(self) -> None:
        self.smi = shutil.which("nvidia-smi")
        self.samples: list[float] = []
        self.peaks: dict[str, float] = {}  # "name (pid N)" -> the highest sm share seen

    @property
    def available(self) -> bool:
        return self.smi is not None

    def sample(self, ours: set[int]) -> None:
        if self.smi is None:
            return
        try:
            text = subprocess.run([self.smi, "pmon", "-c", "1", "-s", "u"], capture_output=True, text=True,
                                  timeout=10, stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            self.smi = None  # it does not answer: stop asking
            return
        per_gpu: dict[int, float] = {}
        for p in parse_pmon(text):
            if p.pid in ours:
                continue
            per_gpu[p.gpu] = per_gpu.get(p.gpu, 0.0) + p.sm_percent / 100
            key = f"{p.name} (pid {p.pid}, GPU {p.gpu})"
            self.peaks[key] = max(self.peaks.get(key, 0.0), p.sm_percent / 100)
        self.samples.append(min(1.0, max(per_gpu.values(), default=0.0)))

    def share(self) -> float:
        """The mean over the samples (0..1)."""
        return sum(self.samples) / len(self.samples) if self.samples else 0.0

    def busiest(self) -> list[tuple[str, float]]:
        return sorted(self.peaks.items(), key=lambda kv: -kv[1])[:3]
