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
    "HarnessError",
    "LogitsError",
    "TorchSession",
    "start",
)
MLX_API = (
    "HarnessError",
    "LogitsError",
    "MLXSession",
    "start",
)
# What scores a model is not here: it runs in the scorer's process (harness.scorer), which the training
# process cannot reach; the training process has no data but the batches the data server sends.

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
    "role",
    "tokens",
    "steps",
    "training_seconds",
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

# The session's internals: its connection, relayed figures and helpers. The integrity check reports these
# names on any object, tracked or not (quick feedback: the figures that count are the data server's and
# the scorer's, in other processes, whatever the script does to these).
SESSION_INTERNALS = (
    "_progress",
    "_remaining",
    "_stop",
    "_t_progress",
    "_last_loss",
    "_finished",
    "_channel",
    "_ask",
    "_rows",
    "_maybe_log",
    "_fail",
    "_to_device",
    "_save_weights",
    "_count_params",
    "_serve",
)

BACKEND_API = {"torch": TORCH_API, "mlx": MLX_API}
