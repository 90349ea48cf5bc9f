"""The MLX building blocks of scoring, the twin of :mod:`autoresearch.harness.torch_eval` (for tests and tools;
the scorer itself computes cross entropies with torch or numpy on the logits the serving process returns).

Batches are ``mx.array`` int32 pairs (MLX's default integer type; embeddings and cross entropy take it).
``model`` is an ``mlx.nn.Module`` or any callable returning logits of shape (B, T, V >= vocab_size).
MLX places work on its default device, so these functions take no ``device``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autoresearch.harness.mlx import mx  # with the same clear message when mlx is missing

from autoresearch.harness.bpb import LogitsError, logits_problem, open_eval, positions_per_chunk, score_rows
from autoresearch.harness.causality import CausalityJudge, CausalityResult, cut_positions, perturb_after, random_rows
from autoresearch.harness.loader import DataError as DataError, LoaderStats, TokenBatches  # DataError: re-exported

__all__ = ["CausalityResult", "DataError", "LogitsError", "MLXBatches", "batches", "check_causality", "evaluate_bpb"]

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
