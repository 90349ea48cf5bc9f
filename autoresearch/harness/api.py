"""What the harness offers a training script, declared in code (and importing nothing).

``autoresearch.harness.torch`` and ``autoresearch.harness.mlx`` take their ``__all__`` from here, and the
integrity check (``autoresearch.harness.integrity``) reads the same tuples to know what train.py may use,
without importing torch or mlx. ``tests/test_harness_api.py`` checks these declarations against the real
modules and session classes, so a name added to the harness has to be declared here too.
"""

from __future__ import annotations

# The public names of each backend's harness module: what `import autoresearch.harness.<backend> as
# harness` may use and what `from autoresearch.harness.<backend> import ...` may import.
TORCH_API = (
    "CausalityResult",
    "DataError",
    "HarnessError",
    "TorchSession",
    "LogitsError",
    "TorchBatches",
    "batches",
    "check_causality",
    "evaluate_bpb",
    "start",
)
MLX_API = (
    "CausalityResult",
    "DataError",
    "HarnessError",
    "LogitsError",
    "MLXBatches",
    "MLXSession",
    "batches",
    "check_causality",
    "evaluate_bpb",
    "start",
)

# The session that harness.start() returns (harness.session.Session and its backend subclasses): the
# attributes and methods train.py may use. Reading them is fine; the integrity check rejects writing any
# attribute of the session.
SESSION_API = (
    # fields
    "backend",
    "config",
    "seq_len",
    "vocab_size",
    "time_budget",
    "seed",
    "t_start",
    "tokens",
    "steps",
    "training_seconds",
    "uncounted_seconds",
    "device",  # torch and mlx sessions
    "autocast_dtype",  # torch session
    # properties
    "progress",
    "remaining",
    "tokens_per_second",
    # methods
    "train_batches",
    "keep_training",
    "check_loss",
    "finish",
    "autocast",  # torch session
    "synchronize",
    "peak_memory_mb",
)

# The session's internals: its clock, counters and scoring. The integrity check reports these names on
# any object, tracked or not, because a script that reaches them by a path the check does not follow could
# still change the clock or the score.
SESSION_INTERNALS = (
    "_tokens_uncounted",
    "_first_batch_tokens",
    "_t_first_batch",
    "_t_last",
    "_t_progress",
    "_last_loss",
    "_finished",
    "_train_batch_size",
    "_evaluate",
    "_causality",
    "_count_params",
    "_numpy_batches",
    "_maybe_log",
    "_write_metrics",
    "_base_metrics",
    "_fail",
    "_score_test",
    "_print_summary",
)

BACKEND_API = {"torch": TORCH_API, "mlx": MLX_API}
