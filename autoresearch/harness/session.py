"""A training session: the harness's side of one training run (backend-neutral part).

The training script asks for a session (``harness.torch.start()`` / ``harness.mlx.start()``) and then:

    batches = session.train_batches(DEVICE_BATCH_SIZE)   # the only source of training data
    while session.keep_training():                       # once per optimizer step; False when the budget is spent
        ... forward/backward on next(batches), optimizer step, lr from session.progress ...
        session.check_loss(loss)                         # NaN / explosion -> the run ends with status "nan"
    session.finish(model)                                # evaluation, causality check, metrics, summary

The harness, not the script, owns: the clock (training time is the sum of step durations measured here,
minus the first ``uncounted_steps`` that absorb compilation), the token count (tokens handed out by
``train_batches``), the evaluation (fixed tokens of the val split at a fixed sequence length), the
causality check, and the metrics file (JSON, written atomically to the path the engine passes in
``AUTORESEARCH_METRICS``). A script that trains outside ``keep_training`` is caught by the wall-clock
cross-check in ``finish`` (time between the first batch and finish() that no step accounts for) and is
reported invalid.
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

from ..paths import STATE_DIR

HARNESS_ENV = "AUTORESEARCH_HARNESS"  # path of the run's harness.json
METRICS_ENV = "AUTORESEARCH_METRICS"  # where this experiment's metrics go
SEED_ENV = "AUTORESEARCH_SEED"  # the engine sets another seed for confirmation runs
TEST_METRICS_ENV = "AUTORESEARCH_TEST_METRICS"  # held-out test score: the engine's eyes only
DEFAULT_CONFIG = Path(STATE_DIR) / "harness.json"
LOSS_LIMIT = 100.0  # a cross-entropy above this (or non-finite) means the run diverged


class HarnessError(RuntimeError):
    """The harness cannot run: missing config or data. The message says what to do."""


@dataclass(frozen=True)
class HarnessConfig:
    """Fixed per run; written by the engine when the run is created, never by the agent."""

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
    uncounted_steps: int = 1  # first steps whose time is not counted (compilation, allocator warm-up)
    peak_flops: float | None = None
    budget_slack: float = 0.05  # time allowed outside the step clock, fraction of the budget (at least 5 s)
    progress_interval: float = 5.0  # seconds between progress lines
    max_steps: int | None = None  # stop after this many steps too (reproducible runs; tests)
    test_tokens: int = 0  # tokens of the held-out test split scored after val (0: not scored)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "HarnessConfig":
        path = Path(path or os.environ.get(HARNESS_ENV) or DEFAULT_CONFIG)
        if not path.exists():
            raise HarnessError(
                f"No harness config at {path}. Run training scripts inside a run directory created by "
                "`autoresearch run`, or point AUTORESEARCH_HARNESS at a harness.json."
            )
        raw = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in raw.items() if k in known}
        if os.environ.get(SEED_ENV):
            values["seed"] = int(os.environ[SEED_ENV])
        return cls(**values)


class NonFiniteLoss(Exception):
    """Raised by check_loss; finish() is not needed after it (the session already reported)."""


class Session:
    """Backend-neutral bookkeeping. Subclasses provide synchronisation, batches and evaluation."""

    backend = "none"

    def __init__(self, config: HarnessConfig) -> None:
        self.config = config
        self.seq_len = config.seq_len
        self.vocab_size = config.vocab_size
        self.time_budget = float(config.time_budget)
        self.seed = config.seed
        self.t_start = time.perf_counter()
        self.tokens = 0  # training tokens handed out
        self.steps = 0  # completed optimizer steps
        self.training_seconds = 0.0  # counted
        self.uncounted_seconds = 0.0
        self._tokens_uncounted = 0  # tokens handed out by the end of the uncounted steps
        self._first_batch_tokens = 0  # the batch fetched before the loop (prefetch)
        self._t_first_batch: float | None = None
        self._t_last: float | None = None
        self._t_progress = 0.0
        self._last_loss: float | None = None
        self._finished = False

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

    def _evaluate(self, model: Any, split: str, tokens: int, batch_size: int) -> float:
        raise NotImplementedError

    def _causality(self, model: Any, batch_size: int) -> Any:
        raise NotImplementedError

    def _count_params(self, model: Any) -> int:
        raise NotImplementedError

    def _numpy_batches(self, batch_size: int, raw_rows: bool = False) -> Iterator[tuple[Any, Any]]:
        """Training rows from the harness loader, counted. With raw_rows, yields ((B, T+1) rows, None)."""
        from .loader import TokenBatches

        self._train_batch_size = batch_size
        loader = TokenBatches(self.config.data_dir, "train", batch_size, self.seq_len, seed=self.seed)
        while True:
            rows = loader.next_rows(batch_size)
            if self._t_first_batch is None:
                self._t_first_batch = time.perf_counter()
                self._first_batch_tokens = rows.shape[0] * (rows.shape[1] - 1)
            self.tokens += rows.shape[0] * (rows.shape[1] - 1)
            yield (rows, None) if raw_rows else (rows[:, :-1], rows[:, 1:])

    # -- the clock --------------------------------------------------------------------------------------
    @property
    def progress(self) -> float:
        """Fraction of the budget used so far (0..1), for schedules: time, or steps when max_steps is set."""
        if self.config.max_steps:
            return min(1.0, self.steps / self.config.max_steps)
        return min(1.0, self.training_seconds / self.time_budget)

    @property
    def remaining(self) -> float:
        return max(0.0, self.time_budget - self.training_seconds)

    def keep_training(self) -> bool:
        """Mark a step boundary. Returns False once the counted training time reaches the budget."""
        self.synchronize()
        now = time.perf_counter()
        if self._t_last is not None:
            dt = now - self._t_last
            self.steps += 1
            if self.steps <= self.config.uncounted_steps:
                self.uncounted_seconds += dt
                self._tokens_uncounted = self.tokens
            else:
                self.training_seconds += dt
            self._maybe_log(now)
        self._t_last = now
        if self.config.max_steps is not None and self.steps >= self.config.max_steps:
            return False
        return self.training_seconds < self.time_budget

    def check_loss(self, loss: Any) -> float:
        """Record the step's loss; a non-finite or exploding loss ends the run with status nan."""
        value = float(loss.item() if hasattr(loss, "item") else loss)
        self._last_loss = value
        if not math.isfinite(value) or value > LOSS_LIMIT:
            self._fail("nan", f"training loss is {value} at step {self.steps}: the run diverged")
        return value

    @property
    def tokens_per_second(self) -> float:
        """Throughput over the counted steps (compilation and warm-up excluded)."""
        if self.training_seconds <= 0:
            return self.tokens / max(1e-9, self.uncounted_seconds)
        return (self.tokens - self._tokens_uncounted) / self.training_seconds

    def _maybe_log(self, now: float) -> None:
        if now - self._t_progress < self.config.progress_interval:
            return
        self._t_progress = now
        tps = self.tokens_per_second
        loss = f"{self._last_loss:.4f}" if self._last_loss is not None else "-"
        print(
            f"step {self.steps:05d} | {100 * self.progress:5.1f}% | loss {loss} | {tps:,.0f} tok/s | "
            f"remaining {self.remaining:.0f}s",
            flush=True,
        )

    # -- the end -------------------------------------------------------------------------------------
    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        path = os.environ.get(METRICS_ENV)
        if not path:
            return
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, p)

    def _base_metrics(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "backend": self.backend,
            "device": self.config.device,
            "seed": self.seed,
            "training_seconds": round(self.training_seconds, 3),
            "uncounted_seconds": round(self.uncounted_seconds, 3),
            "total_seconds": round(time.perf_counter() - self.t_start, 3),
            "num_steps": self.steps,
            "total_tokens": self.tokens,
            "time_budget": self.time_budget,
            "last_loss": self._last_loss,
        }

    def _fail(self, status: str, reason: str) -> None:
        metrics = self._base_metrics(status)
        metrics["reason"] = reason
        metrics["val_bpb"] = None
        self._write_metrics(metrics)
        self._finished = True
        print(f"harness: {reason}", file=sys.stderr, flush=True)
        print("---")
        print(f"status:           {status}")
        raise SystemExit(3)

    def finish(self, model: Any, *, flops_per_token: float | None = None, depth: int | None = None,
               eval_batch_size: int | None = None) -> dict[str, Any]:
        """Evaluate, check, write metrics and print the `---` summary. Returns the metrics."""
        self.synchronize()
        t_end_train = time.perf_counter()
        print(f"harness: training done ({self.steps} steps, {self.training_seconds:.1f}s); evaluating", file=sys.stderr,
              flush=True)
        batch = eval_batch_size or self.config.eval_batch_size or getattr(self, "_train_batch_size", 8)
        status, reason = "ok", ""
        wall = (t_end_train - self._t_first_batch) if self._t_first_batch is not None else 0.0
        untracked = wall - self.training_seconds - self.uncounted_seconds
        allowed = max(5.0, self.time_budget * self.config.budget_slack)
        if untracked > allowed:
            status, reason = "invalid", (
                f"{untracked:.1f}s passed between the first batch and finish() outside the harness's step clock "
                f"(allowed {allowed:.0f}s): did the script train outside keep_training()?"
            )
        counted_steps = self.steps - min(self.steps, self.config.uncounted_steps)
        if status == "ok" and counted_steps > 0 and self.config.uncounted_steps > 0:
            per_uncounted = (self._tokens_uncounted - self._first_batch_tokens) / min(self.steps, self.config.uncounted_steps)
            per_counted = (self.tokens - self._tokens_uncounted) / counted_steps
            if per_uncounted > 1.5 * per_counted + self.seq_len:
                status, reason = "invalid", (
                    f"the uncounted warm-up steps used {per_uncounted:,.0f} tokens each against {per_counted:,.0f} "
                    "in counted steps: training hidden in the warm-up is not allowed"
                )
        causal = self._causality(model, batch)
        if not causal.ok:
            status, reason = "invalid", causal.message
        t0 = time.perf_counter()
        val_bpb = self._evaluate(model, "val", self.config.eval_tokens, batch)
        eval_seconds = time.perf_counter() - t0
        if status == "ok" and not math.isfinite(val_bpb):
            status, reason = "nan", "the model's evaluation gave a non-finite val_bpb"
        n_params = self._count_params(model)
        metrics = self._base_metrics(status)
        tps = self.tokens_per_second
        metrics.update(
            val_bpb=val_bpb if math.isfinite(val_bpb) else None,
            reason=reason,
            causality_max_diff=causal.max_diff if math.isfinite(causal.max_diff) else None,
            eval_seconds=round(eval_seconds, 3),
            eval_tokens=self.config.eval_tokens,
            peak_memory_mb=round(self.peak_memory_mb(), 1),
            num_params=n_params,
            tokens_per_second=round(tps, 1),
            depth=depth,
        )
        if flops_per_token and self.config.peak_flops:
            metrics["mfu_percent"] = round(100 * flops_per_token * tps / self.config.peak_flops, 2)
        self._write_metrics(metrics)
        self._score_test(model, status, batch)
        self._finished = True
        self._print_summary(metrics)
        return metrics

    def _score_test(self, model: Any, status: str, batch: int) -> None:
        """The held-out test score goes to its own file and is never printed: the agent reads the log."""
        path = os.environ.get(TEST_METRICS_ENV)
        if not path or status != "ok" or self.config.test_tokens <= 0:
            return
        test_bpb = self._evaluate(model, "test", self.config.test_tokens, batch)
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps({"test_bpb": test_bpb if math.isfinite(test_bpb) else None, "test_tokens": self.config.test_tokens}))
        os.replace(tmp, p)

    def _print_summary(self, m: dict[str, Any]) -> None:
        rows = [
            ("val_bpb", f"{m['val_bpb']:.6f}" if m["val_bpb"] is not None else "nan"),
            ("training_seconds", f"{m['training_seconds']:.1f}"),
            ("total_seconds", f"{m['total_seconds']:.1f}"),
            ("peak_memory_mb", f"{m['peak_memory_mb']:.1f}"),
        ]
        if "mfu_percent" in m:
            rows.append(("mfu_percent", f"{m['mfu_percent']:.2f}"))
        rows += [
            ("total_tokens_M", f"{m['total_tokens'] / 1e6:.2f}"),
            ("num_steps", str(m["num_steps"])),
            ("num_params_M", f"{m['num_params'] / 1e6:.2f}"),
        ]
        if m.get("depth") is not None:
            rows.append(("depth", str(m["depth"])))
        rows += [("backend", m["backend"]), ("device", str(m["device"])), ("status", m["status"])]
        if m.get("reason"):
            rows.append(("reason", m["reason"]))
        print("---")
        for k, v in rows:
            print(f"{k + ':':<18}{v}")
        sys.stdout.flush()
