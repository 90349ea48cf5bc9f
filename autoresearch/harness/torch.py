"""The PyTorch session: what a train script imports (``import autoresearch.harness.torch as harness``).

``H = harness.start()`` gives a :class:`TorchSession` (the protocol is in :mod:`autoresearch.harness.session`):
batches from the data server on the run's device, the run's autocast, and, at ``H.finish(model)``, the
weights written as safetensors (a format that runs no code). In the serving role the same call loads the
weights into the model and answers the scorer with its logits.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoresearch.harness.api import TORCH_API
from autoresearch.harness.bpb import LogitsError as LogitsError, logits_problem  # LogitsError: re-exported
from autoresearch.harness.session import HarnessConfig, HarnessError as HarnessError, Session  # HarnessError: re-exported
from autoresearch.harness.wire import Channel, WireError

__all__ = list(TORCH_API)  # declared in harness.api, where the integrity check reads it

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
WIRE_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (n, T+1) int32 rows into int64 (inputs, targets) of shape (n, T) on ``device``."""
    if device.type == "cpu":
        return torch.from_numpy(rows[:, :-1]).long(), torch.from_numpy(rows[:, 1:]).long()
    host = torch.from_numpy(rows)
    if device.type == "cuda":
        on_device = host.pin_memory().to(device, non_blocking=True)
    else:
        on_device = host.to(device)
    return on_device[:, :-1].long().contiguous(), on_device[:, 1:].long().contiguous()


def _wait_for_load(channel: Channel) -> bool:
    """The serving process starts before the weights exist (its start-up overlaps the training's end): it waits
    for the scorer's word that they are there. False when the scorer gives up instead."""
    try:
        header, _ = channel.recv()
    except WireError:
        return False
    return header.get("op") == "load"


class TorchSession(Session):
    """The harness side of a PyTorch training run (see ``harness.session`` for the protocol)."""

    backend = "torch"

    def __init__(self, config: HarnessConfig) -> None:
        wanted = config.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise HarnessError("this run was created for CUDA but PyTorch sees no CUDA device here")
        if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise HarnessError("this run was created for Apple MPS but PyTorch cannot use MPS here")
        super().__init__(config)
        self.device = torch.device(wanted)
        self.autocast_dtype = _DTYPES.get(config.dtype) if self.device.type == "cuda" else None
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
            torch.cuda.reset_peak_memory_stats()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context the run's dtype asks for (a no-op on CPU/MPS and in fp32)."""
        return _autocast(self.device, self.autocast_dtype)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def peak_memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        if self.device.type == "mps":
            return torch.mps.driver_allocated_memory() / 2**20
        return super().peak_memory_mb()

    def _to_device(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_device(rows, self.device)

    def _count_params(self, model: Any) -> int:
        return sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0

    def _save_weights(self, model: Any, path: Path) -> None:
        if not isinstance(model, torch.nn.Module):
            raise HarnessError(f"H.finish(model) needs the torch.nn.Module that was trained, got a {type(model).__name__}")
        from safetensors.torch import save_model

        tmp = path.with_name(path.name + ".tmp")
        save_model(model, str(tmp))
        tmp.replace(path)

    def _serve(self, model: Any, weights: Path, channel: Channel) -> None:
        """Load the trained weights; then, per request, the logits of the input rows the scorer sends."""
        if not isinstance(model, torch.nn.Module):
            raise HarnessError(f"H.finish(model) needs the torch.nn.Module, got a {type(model).__name__}")
        from safetensors.torch import load_model

        if not _wait_for_load(channel):
            return
        model.to(self.device)
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(self.device))
        if missing or unexpected:
            raise HarnessError(f"the model built for the evaluation does not match the trained weights (missing "
                               f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}): does the script build the "
                               "same model every time it runs?")
        model.eval()
        channel.send({"ok": True, "loaded": True})
        t_loaded, served, busy = time.perf_counter(), 0, 0.0
        with torch.no_grad():
            while True:
                try:
                    header, payload = channel.recv()
                except WireError:
                    return
                if header.get("op") != "logits":
                    print(f"harness: served {served} batches in {time.perf_counter() - t_loaded:.1f}s ({busy:.1f}s computing; "
                          f"ready {t_loaded - self.t_start:.1f}s after start)", file=sys.stderr, flush=True)
                    return
                t_req = time.perf_counter()
                served += 1
                b, t = int(header["shape"][0]), int(header["shape"][1])
                x = torch.from_numpy(np.frombuffer(payload, dtype=np.int32).reshape(b, t).copy()).long().to(self.device)
                with self.autocast():
                    out = model(x)
                problem = logits_problem(out, torch.Tensor, b, t, self.vocab_size, "torch.Tensor")
                if problem:
                    channel.send({"ok": False, "error": problem})
                    continue
                logits = out[..., : self.vocab_size].detach()
                if logits.dtype not in WIRE_DTYPES:
                    logits = logits.float()
                host = logits.contiguous().cpu()
                raw = host.view(torch.int16) if host.dtype in (torch.bfloat16, torch.float16) else host
                busy += time.perf_counter() - t_req
                channel.send({"ok": True, "shape": [b, t, self.vocab_size], "dtype": WIRE_DTYPES[host.dtype]},
                             raw.numpy().tobytes())


def start(config_path: str | Path | None = None) -> TorchSession:
    """Begin a session with the run's harness config (see ``harness.session``)."""
    return TorchSession(HarnessConfig.load(config_path))
