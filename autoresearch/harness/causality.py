"""Backend-neutral parts of the causality check: inputs, cut positions, tolerance and verdict.

The check: for random token rows ``x`` and a cut position ``t``, ``x2`` equals ``x`` up to ``t`` and
differs at every position after it. A causal model gives the same logits at positions ``0..t`` for both.
Each backend runs the model and reports, per cut, the largest change of the logits at every position up
to the cut; this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["CausalityResult", "CausalityJudge", "cut_positions", "default_atol", "perturb_after", "random_rows"]

# Allowed change of an early logit, relative to the largest logit magnitude (at least 1): kernels may
# legitimately differ in the last bits when later tokens change, never by more than rounding noise.
ATOL_FLOAT32 = 1e-4
ATOL_LOW_PRECISION = 2e-2  # bfloat16 / float16 logits or autocast: 8-bit mantissa


@dataclass(frozen=True)
class CausalityResult:
    ok: bool
    max_diff: float  # the largest change of a logit at or before the cut, over all cuts and trials
    position: int  # the earliest position whose logits changed (-1 when ok)
    message: str


def default_atol(low_precision: bool) -> float:
    return ATOL_LOW_PRECISION if low_precision else ATOL_FLOAT32


def cut_positions(seq_len: int, positions: Iterable[int] | None = None, *, seed: int = 0) -> list[int]:
    """Cuts to test: early (0, 1), middle, late (seq_len - 2) and one random, unless ``positions`` given."""
    if seq_len < 2:
        raise ValueError(f"the causality check needs seq_len >= 2, got {seq_len}")
    if positions is None:
        rng = np.random.default_rng([seed, 7])
        positions = [0, 1, seq_len // 4, seq_len // 2, (3 * seq_len) // 4, seq_len - 2]
        positions.append(int(rng.integers(0, seq_len - 1)))
    cuts = sorted({int(t) for t in positions})
    bad = [t for t in cuts if not 0 <= t < seq_len - 1]
    if bad:
        raise ValueError(f"cut positions must be in [0, {seq_len - 2}] (tokens must follow the cut), got {bad}")
    return cuts


def random_rows(rng: np.random.Generator, batch: int, seq_len: int, vocab_size: int) -> np.ndarray:
    return rng.integers(0, vocab_size, size=(batch, seq_len), dtype=np.int64)


def perturb_after(x: np.ndarray, t: int, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``x`` whose tokens after position ``t`` are all replaced by different random tokens."""
    x2 = x.copy()
    tail = x2[:, t + 1 :]
    tail += rng.integers(1, vocab_size, size=tail.shape, dtype=np.int64)  # a nonzero shift: always different
    tail %= vocab_size
    return x2


class CausalityJudge:
    """Collects, per cut, the per-position change of the logits and turns it into a CausalityResult."""

    def __init__(self, atol: float | None, low_precision: bool) -> None:
        self.rel_atol = default_atol(low_precision) if atol is None else float(atol)
        self.max_diff = 0.0
        self.position = -1
        self.cut = -1
        self.change = 0.0
        self.nonfinite = False

    def add(self, cut: int, position_diff: np.ndarray, scale: float) -> None:
        """``position_diff[p]``: largest |logit change| at position p (p <= cut); ``scale``: max |logit|."""
        diff = np.asarray(position_diff, dtype=np.float64)
        if not np.all(np.isfinite(diff)) or not np.isfinite(scale):
            self.nonfinite = True
            return
        tol = self.rel_atol * max(1.0, float(scale))
        self.max_diff = max(self.max_diff, float(diff.max(initial=0.0)))
        changed = np.flatnonzero(diff > tol)
        if changed.size and (self.position < 0 or changed[0] < self.position):
            self.position, self.cut, self.change = int(changed[0]), cut, float(diff[changed[0]])

    @property
    def failed(self) -> bool:
        return self.nonfinite or self.position >= 0

    def result(self) -> CausalityResult:
        if self.nonfinite:
            return CausalityResult(
                False, float("nan"), -1, "the model produced non-finite logits, so causality could not be verified"
            )
        if self.position >= 0:
            return CausalityResult(
                False,
                self.max_diff,
                self.position,
                f"the model sees the future: its logits at position {self.position} changed by {self.change:.3g} "
                f"when only tokens after position {self.cut} were changed (a causal model's would not change)",
            )
        return CausalityResult(True, self.max_diff, -1, "causal: earlier logits do not depend on later tokens")
