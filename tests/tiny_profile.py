"""A config with a tiny CPU profile on the small prepared stdlib slice: engines started as subprocesses read it."""

from __future__ import annotations

from pathlib import Path

PROFILE = """
[paths]
data_dir = "{data}"
runs_dir = "{runs}"
[profile]
dataset = "stdlib"
vocab_size = 512
time_budget = {budget}
seq_len = 128
depth = 2
width = 64
head_dim = 32
device_batch_size = 8
total_batch_size = 1024
eval_tokens = 4096
"""


def write_config(config_dir: Path, data_root: Path, runs: Path, budget: float = 4) -> Path:
    """``config_dir/config.toml`` with the tiny profile; point AUTORESEARCH_CONFIG_DIR at ``config_dir``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "config.toml"
    path.write_text(PROFILE.format(data=data_root, runs=runs, budget=budget))
    return path
