"""[profile] values in the config apply unless a flag overrides them, and bad ones are refused by every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch import config as config_mod
from autoresearch.hardware import Hardware, profile_for, with_flags


def test_unset_flags_keep_the_configs_values() -> None:
    merged = with_flags({"time_budget": 20, "dataset": "stdlib"}, dataset=None, time_budget=None, backend=None)
    assert merged == {"time_budget": 20, "dataset": "stdlib"}
    assert with_flags({"time_budget": 20}, time_budget=45.0) == {"time_budget": 45.0}
    profile = profile_for(Hardware("Linux", "x86_64", "Xeon", 2, 2, 24.0), merged)
    assert (profile.time_budget, profile.dataset) == (20, "stdlib")


@pytest.mark.parametrize("line, words", [
    ('time_budget = "ten"', "time_budget = 'ten' is not a number"),
    ("depth = 2.5", "depth = 2.5 is not a whole number"),
    ("compile = 1", "compile = 1 is not true or false"),
    ("time_budget = -5", "time_budget = -5 must be positive"),
    ("budget = 20", "[profile] has no setting 'budget'"),
])
def test_bad_profile_values_are_refused_at_load(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[profile]\n{line}\n")
    with pytest.raises(config_mod.ConfigError, match=None) as err:
        config_mod.load(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_every_command_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[profile]\ntime_budget = "ten"\n')
    env = dict(os.environ, AUTORESEARCH_CONFIG_DIR=str(tmp_path))
    for command in (["train"], ["run", "--headless"], ["status"], ["doctor", "--no-llm"]):
        out = subprocess.run([sys.executable, "-m", "autoresearch", *command], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert "time_budget = 'ten' is not a number" in out.stderr and "Traceback" not in out.stderr, command
