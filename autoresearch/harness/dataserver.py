"""The training data and the budget clock, on the trusted side of the boundary.

The training process (agent code) gets its batches from a :class:`DataServer` running in the process that
launched it (the engine, or `autoresearch train`), over a socket. The server

- reads the train shards itself (the training process needs no data directory, and cannot read the val and
  test splits through the harness: they are not served);
- owns the clock: the budget is counted here, from the first real batch, so nothing the script does to its
  own clock matters; it stops serving at the budget (or at ``max_steps``), whatever the script asks;
- counts every real batch it serves (the tokens of a run are what it handed out);
- serves random tokens, not training data, during the uncounted warm-up steps (compilation, allocator
  warm-up), so no training happens off the clock;
- records when the script handed back its weights: they must come within a grace period after the last
  real batch, or the run is invalid (a giant last step, hoarded batches trained on after the budget).

The protocol (see :mod:`~autoresearch.harness.wire`): ``batch`` {rows} -> rows of int32 (or ``stop``),
``step`` {loss} -> {stop, progress, remaining}, ``fail`` {status, reason}, ``done`` {weights, meta}.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .wire import Channel, WireError

MAX_ROWS = 1 << 16  # rows of one batch request (a request for more is refused: the script asks again)
# Seconds allowed after the last real batch, at least, for the last step and writing the weights. 3 s was too
# tight: on a 2-core machine an honest 0.2M-parameter search change took 3.07 s (its neighbours 0.1-0.8 s) and
# was marked invalid; 5 s gives a script that cheats at most 5 s of extra passes over batches it already has
# (under 2% of a 300 s budget).
MIN_GRACE = 5.0
WRITE_RATE = 100e6  # bytes per second of weights allowed on top (a 200 MB model: 2 s more)
CURVE_EVERY = 0.01  # progress between two points of the recorded loss curve (at most ~100 points a run)
CURVE_HALF_LIFE = 0.02  # the smoothing of the curve: an exponential average with this half-life in progress


@dataclass
class Account:
    """What the server saw of one training (trusted figures only)."""

    tokens: int = 0  # target tokens of the real batches served
    batches: int = 0  # real batches served
    warmup_batches: int = 0
    steps: int = 0  # step boundaries reported after the warm-up
    warmup_steps: int = 0
    training_seconds: float = 0.0  # the clock: from the first real batch to the stop (or the last batch)
    stopped_by: str | None = None  # budget | max_steps
    t_start: float | None = None  # monotonic, the first real batch
    t_stop: float | None = None
    t_last_batch: float | None = None
    t_done: float | None = None
    weights: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # what the script says about itself (informational)
    failure: tuple[str, str] | None = None  # (status, reason) the script reported (nan)
    protocol_error: str = ""
    intervals: list[float] = field(default_factory=list)  # seconds between step boundaries
    # (progress, smoothed training loss) every CURVE_EVERY of the budget: the loss is the script's word, the
    # progress and the smoothing are the server's (what early stopping will compare: issue 15)
    curve: list[tuple[float, float]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.training_seconds if self.training_seconds > 0 else 0.0

    weights_bytes: int = 0

    def grace(self) -> float:
        """Seconds allowed between the last real batch and the weights: the larger of MIN_GRACE and three steps
        (the step the budget ran out in, and its end), plus the time to write weights of their size."""
        step = statistics.median(self.intervals) if self.intervals else 0.0
        return max(MIN_GRACE, 3.0 * step) + self.weights_bytes / WRITE_RATE

    def late_by(self) -> float | None:
        """How much later than allowed the weights came (None when in time or not at all)."""
        if self.t_done is None:
            return None
        end = self.t_last_batch if self.t_last_batch is not None else self.t_start
        if end is None:
            return None
        late = (self.t_done - end) - self.grace()
        return late if late > 0 else None


class DataServer:
    def __init__(self, channel: Channel, *, data_dir: str, seq_len: int, vocab_size: int, seed: int,
                 budget: float, uncounted_steps: int = 1, max_steps: int | None = None,
                 clock: Callable[[], float] = time.monotonic, on_end: Callable[[], None] | None = None,
                 on_done: Callable[["Account"], None] | None = None, weights_path: str | None = None) -> None:
        self.channel = channel
        self.data_dir = data_dir
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.seed = seed
        self.budget = float(budget)
        self.uncounted_steps = max(0, int(uncounted_steps))
        self.max_steps = max_steps
        self.clock = clock
        self.account = Account()
        self._loader: Any = None
        self._rng = np.random.default_rng([seed, 99])
        self._step_seen = 0  # step boundaries reported (the warm-up ones included)
        self._t_step: float | None = None
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.on_end = on_end  # called once, when the training's end is in sight (the budget spent, or done)
        self.on_done = on_done  # called when the script says its weights are written (before it has exited)
        self.weights_path = weights_path  # where the weights must be (the script's word for it is not taken)
        self._ended = False
        self._smooth: float | None = None  # the exponential average of the loss
        self._smooth_at = 0.0  # the progress it was last updated at
        self.on_curve: Callable[["Account"], None] | None = None  # called (server thread) after each new point

    # -- the clock ------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        a = self.account
        if a.t_start is None:
            return 0.0
        end = a.t_stop if a.t_stop is not None else self.clock()
        return end - a.t_start

    def _check_stop(self) -> bool:
        a = self.account
        if a.t_stop is not None:
            return True
        if a.t_start is not None and self._elapsed() >= self.budget:
            a.t_stop, a.stopped_by = a.t_start + self.budget, "budget"
        elif self.max_steps is not None and a.steps >= self.max_steps:
            a.t_stop, a.stopped_by = self.clock(), "max_steps"
        if a.t_stop is not None:
            a.training_seconds = a.t_stop - (a.t_start or a.t_stop)
            self._end()
            return True
        return False

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self.on_end is not None:
                try:
                    self.on_end()
                except Exception:  # noqa: BLE001 - a late start of the scorer is not the training's failure
                    pass

    def _warming_up(self) -> bool:
        """Batches asked for before the last uncounted step has begun are random tokens: with one uncounted step,
        the batch prefetched for it; the next one (asked for during it, for the second step) is real data, and the
        clock starts when it is served."""
        return self._step_seen < self.uncounted_steps

    def _status(self) -> dict[str, Any]:
        stop = self._check_stop()
        elapsed = self._elapsed()
        if self.max_steps:
            progress = min(1.0, self.account.steps / self.max_steps)
        else:
            progress = min(1.0, elapsed / self.budget) if self.budget > 0 else 1.0
        return {"stop": stop, "progress": progress, "remaining": max(0.0, self.budget - elapsed),
                "steps": self.account.steps, "tokens": self.account.tokens, "warmup": self._warming_up(),
                "training_seconds": elapsed}

    # -- serving --------------------------------------------------------------------------------------
    def serve(self) -> None:
        """Answer the training process until it closes the connection (thread target)."""
        try:
            while True:
                try:
                    header, _ = self.channel.recv(expect_payload=0)
                except WireError:
                    return  # the training process exited (or was killed)
                op = header.get("op")
                with self._lock:
                    if op == "batch":
                        self._batch(header)
                    elif op == "step":
                        self._step(header)
                    elif op == "fail":
                        self.account.failure = (str(header.get("status") or "crash")[:20], str(header.get("reason") or "")[:2000])
                        self.channel.send({"ok": True})
                    elif op == "done":
                        self._done(header)
                    else:
                        self.account.protocol_error = f"unknown request {str(op)[:40]!r}"
                        self.channel.send({"ok": False, "error": self.account.protocol_error})
        except BaseException as e:  # noqa: BLE001 - recorded for the runner: a server failure is not the script's
            self.error = e
        finally:
            if self.account.t_stop is None and self.account.t_start is not None:
                self.account.training_seconds = self._elapsed()
            self.channel.close()

    def _batch(self, header: dict[str, Any]) -> None:
        rows = header.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= MAX_ROWS:
            self.channel.send({"ok": False, "error": f"rows must be an integer in 1..{MAX_ROWS}, got {rows!r}"})
            return
        shape = [rows, self.seq_len + 1]
        if self._warming_up():
            batch = self._rng.integers(0, self.vocab_size, size=shape, dtype=np.int32)
            self.account.warmup_batches += 1
            self.channel.send({"ok": True, "shape": shape, **self._status()}, batch.tobytes())
            return
        a = self.account
        if a.t_start is None:
            a.t_start = self.clock()
        if self._check_stop():
            self.channel.send({"ok": True, "shape": shape, **self._status()})  # no payload: the budget is spent
            return
        batch = self._train_loader().next_rows(rows)
        a.tokens += rows * self.seq_len
        a.batches += 1
        a.t_last_batch = self.clock()
        self.channel.send({"ok": True, "shape": shape, **self._status()}, np.ascontiguousarray(batch, dtype=np.int32).tobytes())

    def _step(self, header: dict[str, Any]) -> None:
        now = self.clock()
        self._step_seen += 1
        counted = self._step_seen > self.uncounted_steps
        if counted:
            if self._t_step is not None and self._step_seen > self.uncounted_steps + 1:
                self.account.intervals.append(now - self._t_step)
            self.account.steps += 1
        else:
            self.account.warmup_steps += 1
        self._t_step = now
        status = self._status()
        self.channel.send({"ok": True, **status})
        # the loss a step reports is its previous step's: the first counted step's is still a warm-up loss
        if counted and self.account.steps > 1 and not status["stop"]:
            self._record_loss(header.get("loss"), float(status["progress"]))

    def _record_loss(self, loss: Any, progress: float) -> None:
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
            return
        loss = float(loss)
        if self._smooth is None:
            self._smooth = loss
        else:  # an average over progress, not steps: the same smoothing at any step rate
            keep = 0.5 ** (max(0.0, progress - self._smooth_at) / CURVE_HALF_LIFE)
            self._smooth = keep * self._smooth + (1.0 - keep) * loss
        self._smooth_at = progress
        curve = self.account.curve
        if not curve or progress - curve[-1][0] >= CURVE_EVERY:
            curve.append((round(progress, 4), round(self._smooth, 4)))
            if self.on_curve is not None:
                try:
                    self.on_curve(self.account)
                except Exception:  # noqa: BLE001 - a judge's failure is not the training's
                    pass

    def _done(self, header: dict[str, Any]) -> None:
        a = self.account
        a.t_done = self.clock()
        if a.t_stop is None:  # the script stopped before the budget (max_steps, a short loop)
            a.training_seconds = self._elapsed()
        weights = self.weights_path or header.get("weights")
        a.weights = str(weights)[:4096] if weights else None
        try:
            a.weights_bytes = os.stat(a.weights).st_size if a.weights else 0
        except OSError:
            a.weights_bytes = 0
        self._end()
        if self.on_done is not None:
            try:
                self.on_done(a)
            except Exception:  # noqa: BLE001 - the scorer starts later then; not the training's failure
                pass
        meta = header.get("meta")
        a.meta = {str(k)[:64]: v for k, v in meta.items() if isinstance(v, (int, float, str, bool)) or v is None} \
            if isinstance(meta, dict) else {}
        self.channel.send({"ok": True, "late": a.late_by()})

    def _train_loader(self) -> Any:
        if self._loader is None:
            from .loader import TokenBatches

            self._loader = TokenBatches(self.data_dir, "train", 1, self.seq_len, seed=self.seed)
        return self._loader


def start_server(channel: Channel, **kwargs: Any) -> tuple[DataServer, threading.Thread]:
    server = DataServer(channel, **kwargs)
    thread = threading.Thread(target=server.serve, name="autoresearch-data-server", daemon=True)
    thread.start()
    return server, thread
