"""The MLX side of the harness: the same API as ``autoresearch.harness.torch`` for mlx.

Train scripts use only these names::

    import autoresearch.harness.mlx as harness
    H = harness.start()                      # an MLXSession: batches, clock, evaluation (see harness.session)

    from autoresearch.harness.mlx import batches, evaluate_bpb, check_causality   # the building blocks

Batches are ``mx.array`` int32 pairs (MLX's default integer type; embeddings and cross entropy take it).
``model`` is an ``mlx.nn.Module`` or any callable returning logits of shape (B, T, V >= vocab_size).
MLX places work on its default device, so these functions take no ``device``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from autoresearch.harness.bpb import LogitsError, logits_problem, open_eval, positions_per_chunk, score_rows
from autoresearch.harness.causality import CausalityJudge, CausalityResult, cut_positions, perturb_after, random_rows
from autoresearch.harness.loader import DataError as DataError, LoaderStats, TokenBatches  # DataError: re-exported
from autoresearch.harness.session import HarnessConfig, HarnessError, Session

__all__ = list(MLX_API)  # declared in harness.api, where the integrity check reads it

Model = Callable[[Any], Any]
_LOW_PRECISION = (mx.bfloat16, mx.float16)


class MLXBatches:
    """Iterator over ``(inputs, targets)`` int32 ``mx.array`` pairs of shape (B, T)."""

    def __init__(self, loader: TokenBatches) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[mx.array, mx.array]]:
        return self

    def __next__(self) -> tuple[mx.array, mx.array]:
        return _rows_to_arrays(self.loader.next_rows(self.loader.batch_size))

    @property
    def stats(self) -> LoaderStats:
        return self.loader.stats

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


def batches(data_dir: str | Path, split: str, batch_size: int, seq_len: int, seed: int = 0) -> MLXBatches:
    """Packed batches of ``split`` (``train`` loops forever, shuffled by ``seed``; ``val``/``test`` once, in order)."""
    return MLXBatches(TokenBatches(data_dir, split, batch_size, seq_len, seed=seed))


def _rows_to_arrays(rows: np.ndarray) -> tuple[mx.array, mx.array]:
    return mx.array(rows[:, :-1]), mx.array(rows[:, 1:])


# -- model mode ---------------------------------------------------------------------------------------------
class _EvalMode:
    """model.eval() inside, the previous training mode restored afterwards (for modules that have one)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.previous: bool | None = None

    def __enter__(self) -> None:
        training = getattr(self.model, "training", None)
        if isinstance(training, bool) and callable(getattr(self.model, "train", None)):
            self.previous = training
            self.model.train(False)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            self.model.train(self.previous)


def _logits(model: Model, x: mx.array, vocab_size: int) -> mx.array:
    out = model(x)
    problem = logits_problem(out, mx.array, x.shape[0], x.shape[1], vocab_size, "mx.array")
    if problem:
        raise LogitsError(problem)
    return out


# -- evaluation ---------------------------------------------------------------------------------------------
def _nats_and_bytes(
    logits: mx.array, targets: mx.array, token_bytes: mx.array, vocab_size: int
) -> tuple[float, int, bool]:
    """Summed float32 cross entropy over counted targets, their bytes, and whether all logits were finite."""
    flat = logits[..., :vocab_size].reshape(-1, vocab_size)
    tgt = targets.reshape(-1)
    nbytes = token_bytes[tgt]
    total_nats, finite = 0.0, True
    step = positions_per_chunk(vocab_size)
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step].astype(mx.float32)
        t = tgt[i : i + step]
        ce = mx.logsumexp(chunk, axis=-1) - mx.take_along_axis(chunk, t[:, None], axis=-1)[:, 0]
        ce = mx.where(nbytes[i : i + step] > 0, ce, 0.0)
        ok = mx.all(mx.isfinite(chunk))
        mx.eval(ce, ok)
        total_nats += float(np.asarray(ce).sum(dtype=np.float64))  # float64 sum on the host: MLX sums in float32
        finite = finite and bool(ok.item())
    return total_nats, int(mx.sum(nbytes).item()), finite


def evaluate_bpb(
    model: Model,
    data_dir: str | Path,
    *,
    seq_len: int,
    eval_tokens: int,
    batch_size: int,
    split: str = "val",
) -> float:
    """Bits per byte of ``model`` on the first ``eval_tokens // seq_len`` packed rows of ``split``.

    Runs ``model(inputs)`` in eval mode (restoring the previous mode afterwards). Returns ``nan`` when the
    logits are not finite. Raises LogitsError when the output is not (B, T, V >= vocab_size) logits,
    DataError when the data is invalid or the split is too small.
    """
    plan = open_eval(data_dir, split, seq_len=seq_len, eval_tokens=eval_tokens, batch_size=batch_size)
    token_bytes = mx.array(plan.token_bytes.astype(np.int32))

    def score(rows: np.ndarray) -> tuple[float, int, bool]:
        x, y = _rows_to_arrays(rows)
        return _nats_and_bytes(_logits(model, x, plan.vocab_size), y, token_bytes, plan.vocab_size)

    with _EvalMode(model):
        return score_rows(plan, batch_size, score)


# -- causality ----------------------------------------------------------------------------------------------
def check_causality(
    model: Model,
    vocab_size: int,
    seq_len: int,
    *,
    trials: int = 2,
    positions: list[int] | None = None,
    atol: float | None = None,
    batch_size: int = 2,
    seed: int = 0,
) -> CausalityResult:
    """Check that logits at positions <= t do not change when only tokens after t change.

    Same procedure and tolerances as ``autoresearch.harness.torch.check_causality`` (low-precision
    tolerance when the logits are bfloat16/float16).
    """
    if trials < 1 or batch_size < 1:
        raise ValueError(f"trials and batch_size must be positive, got {trials} and {batch_size}")
    cuts = cut_positions(seq_len, positions, seed=seed)
    rng = np.random.default_rng([seed, 1])
    judge: CausalityJudge | None = None
    with _EvalMode(model):
        for _ in range(trials):
            x = random_rows(rng, batch_size, seq_len, vocab_size)
            base = _logits(model, mx.array(x.astype(np.int32)), vocab_size)[..., :vocab_size]
            if judge is None:
                judge = CausalityJudge(atol, base.dtype in _LOW_PRECISION)
            for t in cuts:
                x2 = mx.array(perturb_after(x, t, vocab_size, rng).astype(np.int32))
                out = _logits(model, x2, vocab_size)[..., :vocab_size]
                before = base[:, : t + 1].astype(mx.float32)
                change = mx.max(mx.abs(out[:, : t + 1].astype(mx.float32) - before), axis=(0, 2))
                scale = mx.max(mx.abs(before))
                mx.eval(change, scale)
                judge.add(t, np.array(change), float(scale.item()))
                if judge.failed:
                    return judge.result()
    assert judge is not None
    return judge.result()


# -- the training session -----------------------------------------------------------------------------------
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


class MLXSession(Session):
    """The harness side of an MLX training run (see ``harness.session`` for the protocol)."""

    backend = "mlx"

    def __init__(self, config: HarnessConfig) -> None:
        super().__init__(config)
        self.device = _select_device(config.device)
        mx.random.seed(config.seed)
        np.random.seed(config.seed % 2**32)

    def train_batches(self, batch_size: int) -> Iterator[tuple[mx.array, mx.array]]:
        """(inputs, targets) int32 ``mx.array`` pairs of shape (batch_size, seq_len), counted by the harness."""
        for rows, _ in self._numpy_batches(batch_size, raw_rows=True):
            yield _rows_to_arrays(rows)

    def synchronize(self) -> None:
        sync = getattr(mx, "synchronize", None)
        if sync is not None:
            sync()

    def peak_memory_mb(self) -> float:
        peak = _peak_memory_bytes()
        return peak / 2**20 if peak > 0 else super().peak_memory_mb()

    def _evaluate(self, model: Any, split: str, tokens: int, batch_size: int) -> float:
        return evaluate_bpb(model, self.config.data_dir, seq_len=self.seq_len, eval_tokens=tokens,
                            batch_size=batch_size, split=split)

    def _causality(self, model: Any, batch_size: int) -> CausalityResult:
        return check_causality(model, self.vocab_size, self.seq_len, trials=1, batch_size=min(batch_size, 2),
                               seed=self.seed)

    def _count_params(self, model: Any) -> int:
        parameters = getattr(model, "parameters", None)
        if not callable(parameters):
            return 0
        from mlx.utils import tree_flatten

        return sum(int(v.size) for _, v in tree_flatten(parameters()) if isinstance(v, mx.array))


def start(config_path: str | Path | None = None) -> MLXSession:
    """Begin a training session with the run's harness config (see ``harness.session``)."""
    return MLXSession(HarnessConfig.load(config_path))
