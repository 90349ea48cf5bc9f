"""What machine is this, and what should a run on it look like?

``detect()`` reads the machine into a ``Hardware`` record (plain data, so tests can record real machines).
``profile_for(hardware)`` picks the first row of ``PROFILE_TABLE`` that matches and returns a ``Profile``:
backend, device, time budget, model scale, batch sizes, vocab, eval tokens and default dataset, with the
reason it was chosen. Overrides (flags, config) are applied on top with ``apply_overrides``.

Nothing here imports torch or mlx at module import time; ``detect()`` imports them guarded.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

GiB = 1024**3


@dataclass
class CudaDevice:
    name: str
    memory_gb: float
    capability: tuple[int, int]
    count: int = 1


@dataclass
class Hardware:
    system: str  # platform.system(): Linux, Darwin, Windows
    machine: str  # platform.machine(): x86_64, arm64, aarch64
    cpu_model: str
    cpu_cores: int  # physical cores (logical when unknown)
    cpu_threads: int
    ram_gb: float
    cuda: CudaDevice | None = None
    apple_chip: str | None = None  # "Apple M4 Pro"; memory is unified, so ram_gb is the GPU's memory too
    mps_available: bool = False
    mlx_available: bool = False
    torch_version: str | None = None
    mlx_version: str | None = None
    notes: list[str] = field(default_factory=list)  # problems found while detecting, each saying what to do

    @property
    def is_apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.machine == "arm64"

    @property
    def unified_memory(self) -> bool:
        return self.is_apple_silicon

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.cuda:
            d["cuda"]["capability"] = list(self.cuda.capability)
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Hardware":
        raw = dict(raw)
        if raw.get("cuda"):
            c = dict(raw["cuda"])
            c["capability"] = tuple(c["capability"])
            raw["cuda"] = CudaDevice(**c)
        return cls(**raw)


# --- peak bf16 throughput, for MFU -------------------------------------------------------------------
# Dense (no sparsity) bf16 tensor-core FLOP/s with FP32 accumulation, from NVIDIA's datasheets and
# architecture whitepapers. GeForce cards accumulate in FP32 at half their FP16-accumulate rate.
# Patterns are tried in order (most specific first) against the device name; an unknown device (or a
# laptop part, whose clocks vary too much) gets no peak, so no MFU is reported rather than a wrong one.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    (r"laptop|mobile|max-q", 0.0),
    (r"\bH200 NVL\b", 835e12),
    (r"\bH200\b", 989.5e12),
    (r"\bH100 NVL\b", 835e12),
    (r"\bH100\b.*PCIe", 756e12),
    (r"\bH100\b", 989.5e12),
    (r"\bGH200\b", 989.5e12),
    (r"\bA100\b", 312e12),
    (r"\bA10G\b", 0.0),
    (r"\bA10\b", 125e12),
    (r"\bL40S\b", 362e12),
    (r"\bL40\b", 181e12),
    (r"\bL4\b", 121e12),
    (r"RTX 6000 Ada", 364e12),
    (r"RTX A6000", 155e12),
    (r"RTX 5090", 209.5e12),
    (r"RTX 5080", 112.6e12),
    (r"RTX 5070 Ti", 87.9e12),
    (r"RTX 5070", 61.7e12),
    (r"RTX 4090", 165.2e12),
    (r"RTX 4080", 97.5e12),
    (r"RTX 4070 Ti", 80.2e12),
    (r"RTX 4070", 58.4e12),
    (r"RTX 4060 Ti", 44.2e12),
    (r"RTX 4060", 30.2e12),
    (r"RTX 3090 Ti", 80e12),
    (r"RTX 3090", 71e12),
    (r"RTX 3080 Ti", 68.2e12),
    (r"RTX 3080", 59.5e12),
    (r"RTX 3070", 40.6e12),
    (r"RTX 3060 Ti", 32.4e12),
    (r"RTX 3060", 25.6e12),
]


def peak_bf16_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a known NVIDIA GPU, or None when unknown."""
    if not device_name:
        return None
    for pattern, flops in PEAK_BF16_FLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return flops or None
    return None


# --- profiles ------------------------------------------------------------------------------------------


@dataclass
class Profile:
    name: str
    backend: str  # "torch" | "mlx"
    device: str  # torch: "cuda" | "mps" | "cpu"; mlx: "gpu" | "cpu"
    time_budget: float  # seconds of training per experiment
    seq_len: int
    depth: int
    width: int  # model dimension
    head_dim: int
    device_batch_size: int  # rows per forward/backward
    total_batch_size: int  # tokens per optimizer step (gradient accumulation makes up the rest)
    vocab_size: int
    eval_tokens: int
    dataset: str
    compile: bool
    dtype: str  # "bf16" | "fp16" | "fp32"
    peak_flops: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ProfileRow:
    """One line of the profile table: when it applies and what it sets."""

    name: str
    when: str  # the condition in words (shown by `doctor`)
    matches: Callable[[Hardware], bool]
    backend: str
    time_budget: int
    seq_len: int
    depth: int
    width: int
    head_dim: int
    device_batch_size: int
    total_batch_size: int
    vocab_size: int
    eval_tokens: int
    dataset: str


def _cuda_mem(hw: Hardware) -> float:
    return hw.cuda.memory_gb if hw.cuda else 0.0


_apple = lambda hw: hw.is_apple_silicon  # noqa: E731

# fmt: off
PROFILE_TABLE: list[ProfileRow] = [
    #          name              when                                     matches                                                   backend  budget seq   depth width hd   dev_b tot_batch vocab eval_tokens   dataset
    ProfileRow("datacenter-cuda", "NVIDIA GPU with >= 40 GB",              lambda hw: _cuda_mem(hw) >= 40,                           "torch", 300,   2048, 8,    512,  128, 128,  2**19,    8192, 40 * 2**19,   "climbmix"),
    ProfileRow("consumer-cuda",   "NVIDIA GPU with 16-40 GB",              lambda hw: _cuda_mem(hw) >= 15,                           "torch", 300,   1024, 6,    384,  64,  32,   2**17,    8192, 2**22,        "tinystories"),
    ProfileRow("small-cuda",      "NVIDIA GPU with < 16 GB",               lambda hw: hw.cuda is not None,                           "torch", 300,   1024, 6,    384,  64,  16,   2**16,    8192, 2**21,        "tinystories"),
    ProfileRow("apple-large",     "Apple Silicon with >= 64 GB unified",   lambda hw: _apple(hw) and hw.ram_gb >= 60,                "mlx",   300,   1024, 6,    384,  64,  32,   2**16,    4096, 2**21,        "tinystories"),
    ProfileRow("apple",           "Apple Silicon with 16-64 GB unified",   lambda hw: _apple(hw) and hw.ram_gb >= 15,                "mlx",   300,   512,  4,    256,  64,  32,   2**15,    4096, 2**20,        "tinystories"),
    ProfileRow("apple-small",     "Apple Silicon with < 16 GB unified",    _apple,                                                   "mlx",   300,   512,  4,    256,  64,  16,   2**14,    4096, 2**19,        "tinystories"),
    ProfileRow("cpu",             "no usable GPU",                         lambda hw: True,                                          "torch", 300,   256,  4,    128,  32,  8,    2**11,    2048, 2**17,        "tinystories"),
]
# fmt: on


def _device_and_dtype(backend: str, hw: Hardware) -> tuple[str, str, bool]:
    """(device, dtype, compile) for a backend on this hardware."""
    if backend == "mlx":
        return ("gpu" if hw.is_apple_silicon else "cpu"), ("bf16" if hw.is_apple_silicon else "fp32"), True
    if hw.cuda is not None:
        bf16 = hw.cuda.capability >= (8, 0)
        return "cuda", ("bf16" if bf16 else "fp16"), True
    if hw.is_apple_silicon and hw.mps_available:
        return "mps", "fp32", False
    return "cpu", "fp32", False


def profile_for(hw: Hardware, overrides: dict[str, Any] | None = None) -> Profile:
    """The first matching row of PROFILE_TABLE, adapted to what is installed, then overrides applied."""
    row = next(r for r in PROFILE_TABLE if r.matches(hw))
    reasons = [f"{row.name}: {row.when}"]
    backend = row.backend
    if backend == "mlx" and not hw.mlx_available:
        backend = "torch"
        reasons.append("MLX is not installed, so PyTorch " + ("on MPS" if hw.mps_available else "on the CPU"))
    device, dtype, compile_ = _device_and_dtype(backend, hw)
    if hw.cuda is not None and dtype == "fp16":
        reasons.append(f"compute capability {hw.cuda.capability[0]}.{hw.cuda.capability[1]} has no bf16: fp16 with grad scaling")
    peak = peak_bf16_flops(hw.cuda.name) if hw.cuda else None
    fields = {f.name for f in dataclasses.fields(Profile)}
    values = {k: v for k, v in dataclasses.asdict(row).items() if k in fields}
    values["backend"] = backend
    profile = Profile(
        **values,
        device=device,
        compile=compile_,
        dtype=dtype,
        peak_flops=peak,
        reason="; ".join(reasons),
    )
    return apply_overrides(profile, overrides or {}, hw)


OVERRIDABLE = {
    "backend": str, "device": str, "time_budget": float, "seq_len": int, "depth": int, "width": int,
    "head_dim": int, "device_batch_size": int, "total_batch_size": int, "vocab_size": int,
    "eval_tokens": int, "dataset": str, "compile": bool, "dtype": str,
}


class ProfileError(ValueError):
    """An override that cannot work; the message says which and why."""


def with_flags(config_overrides: dict[str, Any] | None, **flags: Any) -> dict[str, Any]:
    """The config's ``[profile]`` values, then the flags that were given (an unset flag, None, keeps the config's)."""
    return {**(config_overrides or {}), **{k: v for k, v in flags.items() if v is not None}}


def apply_overrides(profile: Profile, overrides: dict[str, Any], hw: Hardware | None = None) -> Profile:
    """Return a copy with overrides applied (None values ignored) and validated."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(OVERRIDABLE)
    if unknown:
        raise ProfileError(f"unknown profile setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(OVERRIDABLE))}")
    out = dataclasses.replace(profile)
    for key, value in given.items():
        try:
            setattr(out, key, OVERRIDABLE[key](value))
        except (TypeError, ValueError) as e:
            raise ProfileError(f"{key}={value!r} is not a valid {OVERRIDABLE[key].__name__}") from e
    if "backend" in given and hw is not None and "device" not in given:
        out.device, out.dtype, out.compile = _device_and_dtype(out.backend, hw)
    if out.backend not in ("torch", "mlx"):
        raise ProfileError(f"backend must be torch or mlx, not {out.backend!r}")
    if out.backend == "mlx" and hw is not None and not hw.mlx_available:
        raise ProfileError("backend mlx asked for, but MLX is not installed: `pip install mlx` on Apple Silicon, "
                           "`pip install 'autoresearch[cpu]'` on Linux")
    if out.time_budget <= 0 or out.seq_len <= 0 or out.depth <= 0 or out.device_batch_size <= 0:
        raise ProfileError("time_budget, seq_len, depth and device_batch_size must be positive")
    if out.total_batch_size % (out.device_batch_size * out.seq_len):
        raise ProfileError(
            f"total_batch_size {out.total_batch_size} must be a multiple of device_batch_size x seq_len "
            f"({out.device_batch_size} x {out.seq_len} = {out.device_batch_size * out.seq_len})"
        )
    if out.width % out.head_dim:
        raise ProfileError(f"width {out.width} must be a multiple of head_dim {out.head_dim}")
    if given:
        out.reason = profile.reason + "; overridden: " + ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
    return out


# --- detection -----------------------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    if sys.platform == "darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _nvidia_smi() -> CudaDevice | None:
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"])
    if not out:
        return None
    lines = [ln for ln in out.splitlines() if ln.strip()]
    try:
        name, mem_mib, cap = [p.strip() for p in lines[0].split(",")]
        major, minor = (int(x) for x in cap.split("."))
        return CudaDevice(name=name, memory_gb=round(float(mem_mib) / 1024, 1), capability=(major, minor), count=len(lines))
    except ValueError:
        return None


def detect() -> Hardware:
    import psutil

    notes: list[str] = []
    system, machine = platform.system(), platform.machine()
    hw = Hardware(
        system=system,
        machine=machine,
        cpu_model=_cpu_model(),
        cpu_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        cpu_threads=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_gb=round(psutil.virtual_memory().total / GiB, 1),
        notes=notes,
    )
    if hw.is_apple_silicon:
        hw.apple_chip = hw.cpu_model if hw.cpu_model.startswith("Apple") else "Apple Silicon"

    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            hw.torch_version = torch.__version__
            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                hw.cuda = CudaDevice(
                    name=props.name,
                    memory_gb=round(props.total_memory / GiB, 1),
                    capability=(props.major, props.minor),
                    count=torch.cuda.device_count(),
                )
            mps = getattr(torch.backends, "mps", None)
            hw.mps_available = bool(mps and mps.is_available())
        except Exception as e:  # a broken torch install must not break detection
            notes.append(f"PyTorch is installed but failed to import ({e}); reinstall it: `pip install --force-reinstall torch`")
    else:
        notes.append("PyTorch is not installed: `pip install torch` (it is a dependency of autoresearch)")

    if hw.cuda is None:
        smi = _nvidia_smi()
        if smi is not None:
            hw.cuda = None
            notes.append(
                f"nvidia-smi sees {smi.name} ({smi.memory_gb} GB) but this PyTorch ({hw.torch_version}) cannot use it: "
                "install a CUDA build of torch (`pip install --force-reinstall torch` from PyPI on Linux)"
            )

    if importlib.util.find_spec("mlx") is not None:
        try:
            import mlx.core as mx

            hw.mlx_version = getattr(mx, "__version__", None)
            hw.mlx_available = True
            if hw.is_apple_silicon and not mx.metal.is_available():
                notes.append("MLX is installed but Metal is not available; MLX will run on the CPU")
        except Exception as e:
            notes.append(f"MLX is installed but failed to import ({e}); reinstall it: `pip install --force-reinstall mlx`")
    elif hw.is_apple_silicon:
        notes.append("MLX is not installed; on Apple Silicon it is the fastest backend: `pip install mlx`")
    return hw
