"""Training backends: where each backend's template script is, and how to launch a training script.

Both backends launch the same way (a Python subprocess running the script, with the run's harness
config); they differ in their template and in what must be installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..resources import package_parent, template_path
from ..hardware import Profile
from ..harness.manifest import Manifest
from ..harness.session import HarnessConfig


# Environment variables never passed to a training script (it is LLM-written code): anything that looks
# like a credential, plus the LLM providers' own settings.
_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_PROVIDER_PREFIXES = ("OPENAI_", "ANTHROPIC_", "OLLAMA_", "HF_", "HUGGING_FACE_", "AWS_", "GOOGLE_", "AZURE_")


class BackendError(RuntimeError):
    pass


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # the Python module that must be importable

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def template(self) -> Path:
        path = template_path(self.name)
        if not path.exists():
            raise BackendError(f"the {self.name} training template {path} is missing: reinstall autoresearch "
                               "(pip install --force-reinstall autoresearch)")
        return path


BACKENDS = {"torch": Backend("torch", "torch"), "mlx": Backend("mlx", "mlx")}


def get_backend(name: str) -> Backend:
    try:
        backend = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    if not backend.available:
        hint = "pip install mlx (Apple Silicon) or pip install 'autoresearch[cpu]' (Linux)" if name == "mlx" else "pip install torch"
        raise BackendError(f"the {name} backend is not installed: {hint}")
    return backend


def harness_config(profile: Profile, data_dir: Path, manifest: Manifest, *, seed: int = 0) -> HarnessConfig:
    """The fixed settings a training script gets from the harness, from a profile and prepared data."""
    if manifest.vocab_size != profile.vocab_size and not (profile.vocab_size == 256 and manifest.vocab_size == 257):
        raise BackendError(
            f"the prepared data has vocab {manifest.vocab_size} but the profile asks for {profile.vocab_size}: "
            f"prepare it with `autoresearch prepare --dataset {manifest.dataset} --vocab {profile.vocab_size}`, or set "
            f"`vocab_size = {manifest.vocab_size}` under [profile] in the config (`train` also takes --vocab)"
        )
    return HarnessConfig(
        data_dir=str(Path(data_dir).resolve()),  # the training runs in the run directory
        seq_len=profile.seq_len,
        vocab_size=manifest.vocab_size,
        time_budget=profile.time_budget,
        eval_tokens=profile.eval_tokens,
        device=profile.device,
        dtype=profile.dtype,
        compile=profile.compile,
        seed=seed,
        backend=profile.backend,
        eval_batch_size=profile.device_batch_size,
        uncounted_steps=10 if profile.compile else 1,
        peak_flops=profile.peak_flops,
        test_tokens=test_tokens_available(data_dir, profile.seq_len, profile.eval_tokens),
        extra={"profile": profile.name, "manifest_digest": manifest.digest},
    )


def test_tokens_available(data_dir: Path, seq_len: int, wanted: int) -> int:
    """Tokens of the test split to score (at most ``wanted``), in whole rows; 0 when there is no test split."""
    from ..harness.loader import TokenBatches

    try:
        rows = TokenBatches(data_dir, "test", 1, seq_len, verify=False).count_rows(wanted // seq_len)
    except Exception:
        return 0
    return rows * seq_len


# mlx[cpu] wheels for Linux bundle the reference BLAS (about 6 GFLOP/s); libmlx resolves cblas_sgemm
# dynamically, so a system OpenBLAS preloaded into the training process makes its matmuls ~7x faster.
_OPENBLAS = ("/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/libopenblas.so.0")


def mlx_blas_preload() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    return next((p for p in _OPENBLAS if os.path.exists(p)), None)


# The environment of the agent's processes is an allowlist: what Python, torch, MLX and the GPU drivers read.
_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
              "CUDA_HOME", "CUDA_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
              "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT"}
_ENV_PREFIXES = ("LC_", "TORCH_", "TORCHINDUCTOR_", "TRITON_", "PYTORCH_", "CUDA_", "CUBLAS_", "CUDNN_", "NCCL_",
                 "KMP_", "MLX_", "METAL_", "MTL_")


def agent_env(base: dict[str, str] | None = None, backend: str | None = None) -> dict[str, str]:
    """The environment of a training or serving process (LLM-written code): an allowlist, never a credential."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items()
           if (k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)) and not _SECRET.search(k)}
    env["PYTHONUNBUFFERED"] = "1"
    # torch.compile's caches in one lasting place (not /tmp, emptied by a reboot): an agent's change recompiles only
    # the graphs it touched; the optimizer step and unchanged code come from the cache
    compile_cache = paths.cache_dir() / "compile"
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache / "inductor"))
    env.setdefault("TRITON_CACHE_DIR", str(compile_cache / "triton"))
    blas = mlx_blas_preload() if backend == "mlx" else None
    if blas:
        env["LD_PRELOAD"] = blas
    # the script imports autoresearch.harness: the package this process runs (installed or a checkout), from anywhere
    env["PYTHONPATH"] = str(package_parent())
    return env


def python_executable() -> str:
    return sys.executable
