"""Backend-neutral pieces of the evaluation: bits per byte, the logits contract, a numpy reference.

val_bpb = sum of cross entropies (nats) over the counted targets / (ln 2 * sum of their UTF-8 bytes),
where a target is counted when its token has a byte length > 0 (special tokens such as BOS have 0 bytes
and are excluded from both sums).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoresearch.harness import manifest as mf
from autoresearch.harness.loader import TokenBatches
from autoresearch.harness.manifest import DataError

__all__ = [
    "EvalPlan",
    "LN2",
    "LogitsError",
    "bits_per_byte",
    "eval_rows",
    "logits_problem",
    "score_rows",
    "open_eval",
    "positions_per_chunk",
    "reference_bpb",
    "reference_nats_and_bytes",
    "split_too_small",
]

LN2 = math.log(2.0)
CHUNK_ELEMENTS = 1 << 25  # float32 logits converted at a time when computing the cross entropy (128 MiB)


class LogitsError(ValueError):
    """The model's output is not what the harness asks for: logits of shape (B, T, V >= vocab_size)."""


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Bits per byte from summed cross entropy in nats and the summed byte length of the same targets."""
    if total_bytes <= 0:
        raise DataError("The evaluated targets hold no bytes (only special tokens): cannot compute bits per byte.")
    return float(total_nats) / (LN2 * float(total_bytes))


def eval_rows(eval_tokens: int, seq_len: int) -> int:
    """The number of rows an evaluation of ``eval_tokens`` target tokens at ``seq_len`` uses."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    rows = eval_tokens // seq_len
    if rows < 1:
        raise ValueError(f"eval_tokens ({eval_tokens}) must be at least seq_len ({seq_len})")
    return rows


def split_too_small(split: str, available_rows: int, needed_rows: int, seq_len: int, eval_tokens: int) -> DataError:
    return DataError(
        f"The {split} split is too small for this evaluation: packed into rows of {seq_len} tokens it gives "
        f"{available_rows} rows, but eval_tokens={eval_tokens} needs {needed_rows} "
        f"({needed_rows * seq_len} target tokens). Lower eval_tokens or seq_len, or prepare a dataset with a "
        f"larger {split} split."
    )


def logits_problem(output: object, array_type: type, batch: int, seq_len: int, vocab_size: int,
                   type_name: str = "") -> str | None:
    """Why ``output`` is not valid logits (exactly ``array_type``, shape (batch, seq_len, >= vocab)), or None."""
    expected = f"logits of shape (batch, seq_len, vocab) = ({batch}, {seq_len}, >= {vocab_size})"
    if not isinstance(output, array_type):
        return f"model(inputs) must return {expected}, got a {type(output).__name__}"
    if type(output) is not array_type:  # a subclass could fake what the harness reads
        return f"the model returned a {type(output).__name__}; the harness accepts only a plain {type_name or array_type.__name__} of logits"
    shape = tuple(int(s) for s in output.shape)  # type: ignore[attr-defined]
    if len(shape) != 3 or shape[0] != batch or shape[1] != seq_len or shape[2] < vocab_size:
        return f"model(inputs) must return {expected}, got shape {shape}"
    return None


def score_rows(plan: "EvalPlan", batch_size: int, score: Callable[[np.ndarray], tuple[float, int, bool]]) -> float:
    """Bits per byte over the plan's rows: ``score(rows)`` gives (nats, counted bytes, all logits finite)."""
    total_nats, total_bytes = 0.0, 0
    for rows in plan.row_batches(batch_size):
        nats, nbytes, finite = score(rows)
        if not finite:
            return float("nan")
        total_nats += nats
        total_bytes += nbytes
    return bits_per_byte(total_nats, total_bytes)


def positions_per_chunk(vocab_size: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Token positions of logits to convert to float32 at a time, so a chunk holds at most ``budget`` values."""
    return max(1, budget // max(1, vocab_size))


def reference_nats_and_bytes(
    logits: np.ndarray, targets: np.ndarray, token_bytes: np.ndarray
) -> tuple[float, int]:
    """Plain numpy (float64) sum of cross entropies over counted targets, and the sum of their bytes."""
    vocab = token_bytes.shape[0]
    x = np.asarray(logits, dtype=np.float64)[..., :vocab]
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    target_logit = np.take_along_axis(x, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    nbytes = token_bytes[targets]
    counted = nbytes > 0
    return float((lse - target_logit)[counted].sum()), int(nbytes.sum())


def reference_bpb(logits: np.ndarray, targets: np.ndarray, token_bytes: np.ndarray) -> float:
    """The reference val_bpb of logits (..., V) for targets (...), used to check the backends."""
    return bits_per_byte(*reference_nats_and_bytes(logits, targets, token_bytes))


@dataclass
class EvalPlan:
    """What an evaluation reads: the split's loader, the token byte table and the number of rows."""

    loader: TokenBatches
    token_bytes: np.ndarray  # int64[vocab_size]
    rows: int
    vocab_size: int

    def row_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield exactly ``rows`` packed rows (int32, (n, seq_len + 1)) in batches of at most batch_size."""
        done = 0
        while done < self.rows:
            n = min(batch_size, self.rows - done)
            yield self.loader.next_rows(n)
            done += n


def open_eval(data_dir: str | Path, split: str, *, seq_len: int, eval_tokens: int, batch_size: int) -> EvalPlan:
    """Verify the data and check that ``split`` packs into enough rows before any model runs.

    The evaluation uses ``eval_tokens // seq_len`` rows of the split in its fixed order; the last batch
    is smaller when that is not a multiple of ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows = eval_rows(eval_tokens, seq_len)
    loader = TokenBatches(data_dir, split, batch_size, seq_len, shuffle=False, epochs=1)
    vocab = loader.vocab_size
    token_bytes = mf.load_token_bytes(Path(data_dir)).astype(np.int64)
    if token_bytes.shape != (vocab,):
        raise DataError(
            f"{mf.TOKEN_BYTES_NAME} in {data_dir} has shape {token_bytes.shape}, expected ({vocab},). "
            + mf.prepare_again(data_dir)
        )
    available = loader.count_rows(rows)
    if available < rows:
        raise split_too_small(split, available, rows, seq_len, eval_tokens)
    return EvalPlan(loader, token_bytes, rows, vocab)
