"""A training session: the harness's side of one training run, inside the training process (backend-neutral).

The training script asks for a session (``harness.torch.start()`` / ``harness.mlx.start()``) and then:

    batches = session.train_batches(DEVICE_BATCH_SIZE)   # the only source of training data
    while session.keep_training():                       # once per optimizer step; False when the budget is spent
        ... forward/backward on next(batches), optimizer step, lr from session.progress ...
        session.check_loss(loss)                         # NaN / explosion -> the run ends with status "nan"
    session.finish(model)                                # hands the weights back; the engine evaluates them

Everything that decides the score is outside this process (see :mod:`~autoresearch.harness.dataserver` and
:mod:`~autoresearch.harness.scorer`): the batches and the clock come from the data server of the process
that launched the training, over a socket; ``finish`` writes the model's weights (safetensors: a format that
runs no code) and says so; a fresh scorer process evaluates them, with this same script rebuilding the
model in a *serving* process that receives only input rows and returns logits. The session here only
relays: nothing it computes, prints or writes is a result.

The same script runs in both roles. In the serving role (``AUTORESEARCH_ROLE=serve``) ``keep_training`` is
False at once, the batches are random tokens, and ``finish(model)`` loads the trained weights into the model
and answers the scorer's requests for logits until it is done.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..paths import STATE_DIR
from .wire import Channel, WireError

HARNESS_ENV = "AUTORESEARCH_HARNESS"  # path of the training's harness.json (no data paths in it)
ROLE_ENV = "AUTORESEARCH_ROLE"  # train | serve
DATA_FD_ENV = "AUTORESEARCH_DATA_FD"  # the socket to the data server (train)
SERVE_FD_ENV = "AUTORESEARCH_SERVE_FD"  # the socket to the scorer (serve)
WEIGHTS_ENV = "AUTORESEARCH_WEIGHTS"  # where finish() writes the weights (train) / reads them (serve)
SEED_ENV = "AUTORESEARCH_SEED"  # the engine sets another seed for confirmation runs
DEFAULT_CONFIG = Path(STATE_DIR) / "harness.json"
LOSS_LIMIT = 100.0  # a cross-entropy above this (or non-finite) means the run diverged


class HarnessError(RuntimeError):
    """The harness cannot run: missing config or data. The message says what to do."""


@dataclass(frozen=True)
class HarnessConfig:
    """Fixed per run; written by the engine when the run is created, never by the agent.

    ``data_dir`` is the trusted side's (the data server reads it, the scorer too); the copy of the config
    a training process gets has it removed (see :meth:`for_training`).
    """

    data_dir: str
    seq_len: int
    vocab_size: int
    time_budget: float
    eval_tokens: int
    device: str
    dtype: str = "fp32"
    compile: bool = False
    seed: int = 0
    backend: str = "torch"
    eval_batch_size: int = 0  # 0: use the training device batch size (no recompilation for a new shape)
    uncounted_steps: int = 1  # first steps served random tokens, off the clock (compilation, allocator warm-up)
    peak_flops: float | None = None
    budget_slack: float = 0.05  # kept for older harness.json files; the data server owns the clock now
    progress_interval: float = 5.0  # seconds between progress lines
    max_steps: int | None = None  # stop after this many steps too (reproducible runs; tests)
    test_tokens: int = 0  # tokens of the held-out test split scored after val (0: not scored)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    def for_training(self) -> "HarnessConfig":
        """The copy a training or serving process sees: no data location (its data comes over a socket)."""
        return HarnessConfig(**{**asdict(self), "data_dir": "", "extra": {}})

    @classmethod
    def load(cls, path: str | Path | None = None) -> "HarnessConfig":
        path = Path(path or os.environ.get(HARNESS_ENV) or DEFAULT_CONFIG)
        if not path.exists():
            raise HarnessError(
                f"No harness config at {path}. Run training scripts inside a run directory created by "
                "`autoresearch run`, or with `autoresearch train --script PATH`."
            )
        raw = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in raw.items() if k in known}
        if os.environ.get(SEED_ENV):
            values["seed"] = int(os.environ[SEED_ENV])
        return cls(**values)


def _number(value: Any) -> float | int | None:
    """A plain JSON number (or None) from what a script passes: Python, numpy or tensor scalars."""
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


class NonFiniteLoss(Exception):
    """Raised by check_loss; finish() is not needed after it (the session already reported)."""


def _channel(env: str, what: str) -> Channel:
    fd = os.environ.get(env)
    if not fd:
        raise HarnessError(f"this script gets its {what} from autoresearch: run it with `autoresearch train --script "
                           "PATH` or inside a run (`autoresearch run`), not with python directly")
    try:
        return Channel.from_fd(int(fd))
    except (OSError, ValueError) as e:
        raise HarnessError(f"the connection to autoresearch ({env}={fd}) is not open: {e}") from None


class Session:
    """Backend-neutral bookkeeping of a training process. Subclasses move rows to a device and write weights."""

    backend = "none"

    def __init__(self, config: HarnessConfig) -> None:
        self.config = config
        self.seq_len = config.seq_len
        self.vocab_size = config.vocab_size
        self.time_budget = float(config.time_budget)
        self.seed = config.seed
        self.t_start = time.perf_counter()
        self.role = os.environ.get(ROLE_ENV, "train")
        self.tokens = 0  # real training tokens received (the data server's count is the one that counts)
        self.steps = 0  # step boundaries
        self.training_seconds = 0.0  # the data server's clock, as of its last answer
        self._progress = 0.0
        self._remaining = self.time_budget
        self._stop = False
        self._t_progress = 0.0
        self._last_loss: float | None = None
        self._finished = False
        self._channel = _channel(DATA_FD_ENV, "training data") if self.role == "train" else None

    # -- to be provided by backends ------------------------------------------------------------------
    def synchronize(self) -> None:
        pass

    def peak_memory_mb(self) -> float:
        try:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return rss / 1024 if sys.platform != "darwin" else rss / 1024 / 1024
        except Exception:
            return float("nan")

    def _to_device(self, rows: np.ndarray) -> tuple[Any, Any]:
        raise NotImplementedError

    def _save_weights(self, model: Any, path: Path) -> None:
        raise NotImplementedError

    def _count_params(self, model: Any) -> int:
        raise NotImplementedError

    def _serve(self, model: Any, weights: Path, channel: Channel) -> None:
        raise NotImplementedError

    # -- data -----------------------------------------------------------------------------------------
    def _ask(self, header: dict[str, Any]) -> tuple[dict[str, Any], bytearray]:
        assert self._channel is not None
        try:
            self._channel.send(header)
            reply, payload = self._channel.recv()
        except WireError as e:
            raise HarnessError(f"lost the connection to the data server ({e})") from None
        if not reply.get("ok", False):
            raise HarnessError(f"the data server refused {header.get('op')!r}: {reply.get('error')}")
        for key, attr in (("progress", "_progress"), ("remaining", "_remaining"), ("training_seconds", "training_seconds")):
            if isinstance(reply.get(key), (int, float)):
                setattr(self, attr, float(reply[key]))
        self._stop = bool(reply.get("stop", self._stop))
        return reply, payload

    def _rows(self, batch_size: int) -> Iterator[np.ndarray]:
        """Rows of T+1 tokens from the data server; random tokens in the warm-up and once the budget is spent."""
        shape = (batch_size, self.seq_len + 1)
        while True:
            if self.role != "train":
                yield np.random.default_rng([self.seed, 5]).integers(0, self.vocab_size, size=shape, dtype=np.int32)
                continue
            reply, payload = self._ask({"op": "batch", "rows": batch_size})
            if not payload:  # the budget is spent: a placeholder (never training data) until the loop ends
                yield np.zeros(shape, dtype=np.int32)
                continue
            rows = np.frombuffer(payload, dtype=np.int32).reshape(shape)
            if not reply.get("warmup"):
                self.tokens += batch_size * self.seq_len
            yield rows

    def train_batches(self, batch_size: int) -> Iterator[tuple[Any, Any]]:
        """``(inputs, targets)`` of shape (batch_size, seq_len) on the device, for as long as the loop asks."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise HarnessError(f"train_batches needs a positive batch size, got {batch_size!r}")
        for rows in self._rows(batch_size):
            yield self._to_device(rows)

    # -- the clock --------------------------------------------------------------------------------------
    @property
    def progress(self) -> float:
        """Fraction of the budget used so far (0..1), for schedules (the data server's clock)."""
        return self._progress

    @property
    def remaining(self) -> float:
        return self._remaining

    def keep_training(self) -> bool:
        """Mark a step boundary. False once the data server says the budget (or max_steps) is spent."""
        if self.role != "train":
            return False
        self.synchronize()
        self._ask({"op": "step", "loss": self._last_loss})  # the loss curve is recorded on the trusted side
        self.steps += 1
        self._maybe_log(time.perf_counter())
        return not self._stop

    def check_loss(self, loss: Any) -> float:
        """Record the step's loss; a non-finite or exploding loss ends the run with status nan."""
        value = float(loss.item() if hasattr(loss, "item") else loss)
        self._last_loss = value
        if self.role == "train" and (not math.isfinite(value) or value > LOSS_LIMIT):
            self._fail("nan", f"training loss is {value} at step {self.steps}: the run diverged")
        return value

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.training_seconds if self.training_seconds > 0 else 0.0

    def _maybe_log(self, now: float) -> None:
        if now - self._t_progress < self.config.progress_interval:
            return
        self._t_progress = now
        loss = f"{self._last_loss:.4f}" if self._last_loss is not None else "-"
        print(
            f"step {self.steps:05d} | {100 * self._progress:5.1f}% | loss {loss} | {self.tokens_per_second:,.0f} tok/s | "
            f"remaining {self._remaining:.0f}s",
            flush=True,
        )

    # -- the end -------------------------------------------------------------------------------------
    def _fail(self, status: str, reason: str) -> None:
        self._finished = True
        print(f"harness: {reason}", file=sys.stderr, flush=True)
        if self._channel is not None:
            try:
                self._ask({"op": "fail", "status": status, "reason": reason})
            except HarnessError:
                pass
        raise SystemExit(3)

    def finish(self, model: Any, *, flops_per_token: float | None = None, depth: int | None = None,
               eval_batch_size: int | None = None) -> dict[str, Any]:
        """Train role: write the weights and hand them back. Serve role: load them and answer the scorer."""
        weights = Path(os.environ.get(WEIGHTS_ENV) or "weights.safetensors")
        if self.role == "serve":
            channel = _channel(SERVE_FD_ENV, "evaluation requests")
            self._serve(model, weights, channel)
            self._finished = True
            return {}
        self.synchronize()
        print(f"harness: training done ({self.steps} steps, {self.training_seconds:.1f}s); handing back the weights",
              file=sys.stderr, flush=True)
        weights.parent.mkdir(parents=True, exist_ok=True)
        self._save_weights(model, weights)
        meta = {"steps": self.steps, "num_params": _number(self._count_params(model)),
                "peak_memory_mb": _number(self.peak_memory_mb()), "flops_per_token": _number(flops_per_token),
                "depth": _number(depth), "last_loss": _number(self._last_loss)}
        self._ask({"op": "done", "weights": str(weights), "meta": meta})
        self._finished = True
        print("harness: weights handed back; the engine evaluates them in a process of its own", file=sys.stderr,
              flush=True)
        return meta
