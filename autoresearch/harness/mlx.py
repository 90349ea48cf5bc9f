"""The MLX session: what an MLX train script imports (``import autoresearch.harness.mlx as harness``).

The twin of :mod:`autoresearch.harness.torch`: ``H = harness.start()`` gives an :class:`MLXSession` with
batches from the data server as int32 ``mx.array`` pairs (MLX's default integer type), and ``H.finish(model)``
writes the weights as safetensors (``model.save_weights``) or, in the serving role, loads them and answers
the scorer with the model's logits. MLX places work on its default device, chosen here from the run's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:
    import mlx.core as mx
except ImportError as e:  # only this module needs mlx; the rest of the harness works without it
    raise ImportError(
        "autoresearch.harness.mlx needs the mlx package, which is not installed. "
        "On Linux install it with `pip install 'autoresearch[cpu]'` (mlx[cpu]); "
        "on Apple Silicon with `pip install mlx`."
    ) from e

from autoresearch.harness.api import MLX_API
from autoresearch.harness.bpb import LogitsError as LogitsError, logits_problem  # LogitsError: re-exported
from autoresearch.harness.session import HarnessConfig, HarnessError as HarnessError, Session  # re-exported
from autoresearch.harness.wire import Channel, WireError

__all__ = list(MLX_API)  # declared in harness.api, where the integrity check reads it

_DEVICES = {"gpu": "gpu", "metal": "gpu", "cpu": "cpu"}


def _select_device(wanted: str) -> Any:
    """Make ``wanted`` ("gpu" or "cpu") MLX's default device; HarnessError when it cannot be used here."""
    kind = _DEVICES.get(str(wanted).lower())
    if kind is None:
        raise HarnessError(f"unknown MLX device {wanted!r} in the harness config; use \"gpu\" or \"cpu\"")
    device = mx.gpu if kind == "gpu" else mx.cpu
    is_available = getattr(mx, "is_available", None)
    if kind == "gpu" and is_available is not None and not is_available(device):
        raise HarnessError(
            "this run was created for the MLX GPU (Metal) but this MLX has no GPU backend here "
            "(on Linux, mlx[cpu] runs on the CPU only): create the run again with device \"cpu\""
        )
    try:
        mx.set_default_device(device)
    except (ValueError, RuntimeError) as e:
        raise HarnessError(f"MLX cannot use the {kind} device here: {e}") from e
    return mx.default_device()


def _peak_memory_bytes() -> int:
    """MLX's own peak allocation, whichever name this MLX version gives it (0 when unknown)."""
    for owner in (mx, getattr(mx, "metal", None)):
        fn = getattr(owner, "get_peak_memory", None)
        if fn is not None:
            try:
                return int(fn())
            except Exception:  # e.g. mx.metal on a machine without Metal
                continue
    return 0


_WIRE = {mx.float32: ("float32", np.float32), mx.float16: ("float16", np.float16)}


def _load_weights(model: Any, path: Path) -> None:
    """Put the saved arrays into the model by the dotted names tree_flatten gives them (MLX's own load_weights
    reads a name part made of digits as a list index, which a dict of modules keyed by layer number is not)."""
    from mlx.utils import tree_flatten, tree_map_with_path

    loaded = mx.load(str(path))
    params = model.parameters()
    names = {name for name, _ in tree_flatten(params)}
    missing, unexpected = sorted(names - set(loaded)), sorted(set(loaded) - names)
    if missing or unexpected:
        raise ValueError(f"missing {missing[:5]}, unexpected {unexpected[:5]}")

    def take(name: str, current: Any) -> Any:
        new = loaded[name]
        if tuple(new.shape) != tuple(current.shape):
            raise ValueError(f"{name} has shape {tuple(new.shape)} in the weights, {tuple(current.shape)} in the model")
        return new

    model.update(tree_map_with_path(take, params))


class MLXSession(Session):
    """The harness side of an MLX training run (see ``harness.session`` for the protocol)."""

    backend = "mlx"

    def __init__(self, config: HarnessConfig) -> None:
        self.device = _select_device(config.device)
        super().__init__(config)
        mx.random.seed(config.seed)
        np.random.seed(config.seed % 2**32)

    def synchronize(self) -> None:
        sync = getattr(mx, "synchronize", None)
        if sync is not None:
            sync()

    def peak_memory_mb(self) -> float:
        peak = _peak_memory_bytes()
        return peak / 2**20 if peak > 0 else super().peak_memory_mb()

    def _to_device(self, rows: np.ndarray) -> tuple[mx.array, mx.array]:
        return mx.array(rows[:, :-1]), mx.array(rows[:, 1:])

    def _count_params(self, model: Any) -> int:
        parameters = getattr(model, "parameters", None)
        if not callable(parameters):
            return 0
        from mlx.utils import tree_flatten

        return sum(int(v.size) for _, v in tree_flatten(parameters()) if isinstance(v, mx.array))

    def _save_weights(self, model: Any, path: Path) -> None:
        save = getattr(model, "save_weights", None)
        if not callable(save):
            raise HarnessError(f"H.finish(model) needs the mlx.nn.Module that was trained, got a {type(model).__name__}")
        tmp = path.with_name(path.stem + ".tmp.safetensors")
        save(str(tmp))
        tmp.replace(path)

    def _serve(self, model: Any, weights: Path, channel: Channel) -> None:
        """Load the trained weights; then, per request, the logits of the input rows the scorer sends."""
        load = getattr(model, "load_weights", None)
        if not callable(load):
            raise HarnessError(f"H.finish(model) needs the mlx.nn.Module, got a {type(model).__name__}")
        try:  # the scorer says when the weights are there (this process starts while the training ends)
            header, _ = channel.recv()
        except WireError:
            return
        if header.get("op") != "load":
            return
        try:
            _load_weights(model, weights)
        except (ValueError, KeyError) as e:
            raise HarnessError(f"the model built for the evaluation does not match the trained weights ({e}): does the "
                               "script build the same model every time it runs?") from None
        train = getattr(model, "train", None)
        if callable(train):
            train(False)
        channel.send({"ok": True, "loaded": True})
        while True:
            try:
                header, payload = channel.recv()
            except WireError:
                return
            if header.get("op") != "logits":
                return
            b, t = int(header["shape"][0]), int(header["shape"][1])
            x = mx.array(np.frombuffer(payload, dtype=np.int32).reshape(b, t))
            out = model(x)
            problem = logits_problem(out, mx.array, b, t, self.vocab_size, "mx.array")
            if problem:
                channel.send({"ok": False, "error": problem})
                continue
            logits = out[..., : self.vocab_size]
            name, np_dtype = _WIRE.get(logits.dtype, ("float32", np.float32))
            if logits.dtype not in _WIRE:
                logits = logits.astype(mx.float32)
            mx.eval(logits)
            channel.send({"ok": True, "shape": [b, t, self.vocab_size], "dtype": name},
                         np.asarray(logits, dtype=np_dtype).tobytes())


def start(config_path: str | Path | None = None) -> MLXSession:
    """Begin a session with the run's harness config (see ``harness.session``)."""
    return MLXSession(HarnessConfig.load(config_path))
