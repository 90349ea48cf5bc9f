"""The PyTorch building blocks of scoring: batches on a device, bits per byte from logits, a causality check.

The scorer (:mod:`autoresearch.harness.scorer`) uses them in its own process; train scripts cannot (they
import ``autoresearch.harness.torch``, the session, and get no data but their training batches).

``model(inputs)`` must return logits of shape (B, T, V) with V >= the data's vocab_size (extra columns,
e.g. a vocabulary padded for speed, are ignored). The harness computes the cross entropy itself, in
float32, and trusts nothing else the model returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autoresearch.harness.bpb import LogitsError, logits_problem, open_eval, positions_per_chunk, score_rows
from autoresearch.harness.causality import CausalityJudge, CausalityResult, cut_positions, perturb_after, random_rows
from autoresearch.harness.loader import DataError as DataError, LoaderStats, TokenBatches  # DataError: re-exported
from autoresearch.harness.torch import _to_device as rows_to_device  # one way to put rows on a device

__all__ = ["CausalityResult", "DataError", "LogitsError", "TorchBatches", "batches", "check_causality", "evaluate_bpb",
           "nats_and_bytes", "rows_to_device"]

Model = Callable[[torch.Tensor], Any]
_LOW_PRECISION = (torch.bfloat16, torch.float16)


class TorchBatches:
    """Iterator over ``(inputs, targets)`` int64 tensors of shape (B, T) on ``device``.

    On CUDA the rows go through pinned memory with a non-blocking copy (as int32, widened on the device).
    ``stats`` and ``state_dict``/``load_state_dict`` are those of the underlying TokenBatches.
    """

    def __init__(self, loader: TokenBatches, device: str | torch.device) -> None:
        self.loader = loader
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return rows_to_device(self.loader.next_rows(self.loader.batch_size), self.device)

    @property
    def stats(self) -> LoaderStats:
        return self.loader.stats

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)


def batches(
    data_dir: str | Path, split: str, batch_size: int, seq_len: int, device: str | torch.device, seed: int = 0
) -> TorchBatches:
    """Packed batches of ``split`` (``train`` loops forever, shuffled by ``seed``; ``val``/``test`` once, in order)."""
    return TorchBatches(TokenBatches(data_dir, split, batch_size, seq_len, seed=seed), device)


# -- model mode ---------------------------------------------------------------------------------------------
def _modes(model: Model) -> list[tuple[torch.nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []


@contextlib.contextmanager
def _eval_mode(model: Model) -> Iterator[None]:
    """model.eval() inside, no autograd; afterwards every submodule's own training flag is restored."""
    saved = _modes(model)
    if saved:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if saved:
            model.train(saved[0][1])
            for module, mode in saved:
                if module.training != mode:
                    module.training = mode


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _logits(model: Model, x: torch.Tensor, vocab_size: int, autocast_dtype: torch.dtype | None) -> torch.Tensor:
    with _autocast(x.device, autocast_dtype):
        out = model(x)
    problem = logits_problem(out, torch.Tensor, x.shape[0], x.shape[1], vocab_size, "torch.Tensor")
    if problem:
        raise LogitsError(problem)
    return out


# -- evaluation ---------------------------------------------------------------------------------------------
def nats_and_bytes(
    logits: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor, vocab_size: int
) -> tuple[float, int, bool]:
    """Summed float32 cross entropy over counted targets, their bytes, and whether all logits were finite."""
    flat = logits[..., :vocab_size].flatten(0, 1)
    tgt = targets.to(flat.device).flatten()
    nbytes = token_bytes[tgt]
    acc_dtype = torch.float32 if flat.device.type == "mps" else torch.float64
    nats = torch.zeros((), dtype=acc_dtype, device=flat.device)
    finite = torch.ones((), dtype=torch.bool, device=flat.device)
    step = positions_per_chunk(vocab_size)
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step].float()
        finite &= torch.isfinite(chunk).all()
        ce = F.cross_entropy(chunk, tgt[i : i + step], reduction="none")
        nats += torch.where(nbytes[i : i + step] > 0, ce, 0.0).sum(dtype=acc_dtype)
    return float(nats.item()), int(nbytes.sum().item()), bool(finite.item())


def evaluate_bpb(
    model: Model,
    data_dir: str | Path,
    *,
    seq_len: int,
    eval_tokens: int,
    batch_size: int,
    device: str | torch.device,
    split: str = "val",
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Bits per byte of ``model`` on the first ``eval_tokens // seq_len`` packed rows of ``split``.

    Runs ``model(inputs)`` in eval mode without gradients (under autocast when ``autocast_dtype`` is given)
    and restores the previous train/eval modes afterwards. Returns ``nan`` when the logits are not finite.
    The last batch is smaller when the row count is not a multiple of ``batch_size`` (a compiled model may
    recompile for it: choose ``eval_tokens`` as a multiple of ``batch_size * seq_len`` to avoid that).
    Raises LogitsError when the output is not (B, T, V >= vocab_size) logits, DataError when the data is
    invalid or the split is too small.
    """
    device = torch.device(device)
    plan = open_eval(data_dir, split, seq_len=seq_len, eval_tokens=eval_tokens, batch_size=batch_size)
    token_bytes = torch.from_numpy(plan.token_bytes).to(device)

    def score(rows: np.ndarray) -> tuple[float, int, bool]:
        x, y = rows_to_device(rows, device)
        logits = _logits(model, x, plan.vocab_size, autocast_dtype)
        return nats_and_bytes(logits, y, token_bytes.to(logits.device), plan.vocab_size)

    with _eval_mode(model):
        return score_rows(plan, batch_size, score)


# -- causality ----------------------------------------------------------------------------------------------
def check_causality(
    model: Model,
    vocab_size: int,
    seq_len: int,
    device: str | torch.device,
    *,
    trials: int = 2,
    positions: list[int] | None = None,
    atol: float | None = None,
    batch_size: int = 2,
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> CausalityResult:
    """Check that logits at positions <= t do not change when only tokens after t change.

    For each of ``trials`` random batches and each cut t (early, middle, late and one random position
    unless ``positions`` is given), every token after t is replaced by a different random token. The
    allowed change of a logit is ``atol`` times the largest logit magnitude (at least 1); by default 1e-4
    for float32 and 2e-2 for bfloat16/float16 logits or autocast. The model runs in eval mode (as in the
    evaluation) and its modes are restored afterwards.
    """
    if trials < 1 or batch_size < 1:
        raise ValueError(f"trials and batch_size must be positive, got {trials} and {batch_size}")
    device = torch.device(device)
    cuts = cut_positions(seq_len, positions, seed=seed)
    rng = np.random.default_rng([seed, 1])
    judge: CausalityJudge | None = None
    with _eval_mode(model):
        for _ in range(trials):
            x = random_rows(rng, batch_size, seq_len, vocab_size)
            base = _logits(model, torch.from_numpy(x).to(device), vocab_size, autocast_dtype)[..., :vocab_size]
            if judge is None:
                judge = CausalityJudge(atol, autocast_dtype in _LOW_PRECISION or base.dtype in _LOW_PRECISION)
            for t in cuts:
                x2 = torch.from_numpy(perturb_after(x, t, vocab_size, rng)).to(device)
                out = _logits(model, x2, vocab_size, autocast_dtype)[..., :vocab_size]
                before = base[:, : t + 1].float()
                change = (out[:, : t + 1].float() - before).abs().amax(dim=(0, 2))
                judge.add(t, change.cpu().numpy(), before.abs().max().item())
                if judge.failed:
                    return judge.result()
    assert judge is not None
    return judge.result()
