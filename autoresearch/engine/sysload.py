"""How busy the machine is right now (CPU, memory, NVIDIA GPUs where ``nvidia-smi`` can say), for clients.

Sampling is cheap (psutil reads /proc; ``nvidia-smi`` is asked at most every few seconds) but not free:
call :meth:`LoadSampler.sample` from a worker thread, not from a UI's event loop.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class GpuLoad:
    name: str
    utilization: float | None  # percent
    memory_used_gb: float | None
    memory_total_gb: float | None


@dataclass(frozen=True)
class Load:
    cpu_percent: float  # of the whole machine (all cores)
    cores: int
    memory_used_gb: float
    memory_total_gb: float
    gpus: tuple[GpuLoad, ...] = ()


class LoadSampler:
    def __init__(self, gpu_interval: float = 5.0) -> None:
        self.gpu_interval = gpu_interval
        self._smi = shutil.which("nvidia-smi")
        self._gpus: tuple[GpuLoad, ...] = ()
        self._gpu_at = 0.0
        psutil.cpu_percent(None)  # the first call starts the measurement interval

    def sample(self) -> Load:
        mem = psutil.virtual_memory()
        now = time.monotonic()
        if self._smi and now - self._gpu_at >= self.gpu_interval:
            self._gpu_at = now
            self._gpus = self._nvidia()
        return Load(cpu_percent=psutil.cpu_percent(None), cores=psutil.cpu_count() or 1,
                    memory_used_gb=(mem.total - mem.available) / 1024**3, memory_total_gb=mem.total / 1024**3,
                    gpus=self._gpus)

    def _nvidia(self) -> tuple[GpuLoad, ...]:
        try:
            out = subprocess.run([self._smi or "nvidia-smi", "--query-gpu=name,utilization.gpu,memory.used,memory.total",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            self._smi = None  # it does not answer: stop asking
            return ()
        gpus = []
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 4:
                continue
            gpus.append(GpuLoad(parts[0], _num(parts[1]), _gb(parts[2]), _gb(parts[3])))
        return tuple(gpus)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _gb(mib: str) -> float | None:
    value = _num(mib)
    return value / 1024 if value is not None else None
