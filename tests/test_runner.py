"""The runner on real faulty scripts: every outcome class, the deadline, the process tree, the log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest

from autoresearch.backends import training_env
from autoresearch.training.runner import Runner, RunResult


def _run(tmp_path: Path, code: str, deadline: float = 60.0, env_extra: dict[str, str] | None = None) -> RunResult:
    (tmp_path / "train.py").write_text(code)
    env = training_env(tmp_path / "harness.json", tmp_path / "metrics.json")
    env.update(env_extra or {})
    return Runner().run([sys.executable, "train.py"], cwd=tmp_path, env=env, log_path=tmp_path / "logs" / "0001.log",
                        metrics_path=tmp_path / "metrics.json", deadline_seconds=deadline)


def test_crash_keeps_the_traceback(tmp_path: Path) -> None:
    r = _run(tmp_path, "print('starting')\nraise RuntimeError('shape mismatch in block 3')\n")
    assert r.status == "crash"
    assert "RuntimeError: shape mismatch in block 3" in r.tail
    assert "shape mismatch" in r.reason
    assert (tmp_path / "logs" / "0001.log").read_text().startswith("starting\n")


def test_hang_is_killed_at_the_deadline_with_its_children(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "print('hanging', flush=True)\n"
        "time.sleep(600)\n"
    )
    t0 = time.monotonic()
    r = _run(tmp_path, code, deadline=3.0)
    assert r.status == "timeout"
    assert time.monotonic() - t0 < 15
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.5)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_memory_error_is_oom(tmp_path: Path) -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "hog = []\n"
        "while True:\n"
        "    hog.append(bytearray(50 << 20))\n"
    )
    r = _run(tmp_path, code)
    assert r.status == "oom", r.tail
    assert "MemoryError" in r.tail


def test_printed_results_without_the_harness_are_invalid(tmp_path: Path) -> None:
    r = _run(tmp_path, "print('---')\nprint('val_bpb:          0.500000')\nprint('status: ok')\n")
    assert r.status == "invalid"
    assert "harness" in r.reason
    assert r.val_bpb is None


def test_metrics_come_from_the_harness_file_only(tmp_path: Path) -> None:
    code = (
        "import json, os\n"
        "print('val_bpb: 0.1')\n"
        "json.dump({'status': 'ok', 'val_bpb': 2.5}, open(os.environ['AUTORESEARCH_METRICS'], 'w'))\n"
    )
    r = _run(tmp_path, code)
    assert (r.status, r.val_bpb) == ("ok", 2.5)


def test_nan_and_invalid_statuses_from_the_harness(tmp_path: Path) -> None:
    for status in ("nan", "invalid"):
        code = ("import json, os, sys\n"
                f"json.dump({{'status': '{status}', 'val_bpb': None, 'reason': 'because'}}, open(os.environ['AUTORESEARCH_METRICS'], 'w'))\n"
                "sys.exit(3)\n")
        r = _run(tmp_path, code)
        assert (r.status, r.reason) == (status, "because")


def test_training_env_has_no_credentials(tmp_path: Path) -> None:
    secrets = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a", "HF_TOKEN": "hf", "MY_SECRET": "s",
               "GITHUB_TOKEN": "g", "OLLAMA_HOST": "h", "PLAIN": "kept"}
    base = dict(secrets, PATH="/usr/bin")
    env = training_env(tmp_path / "h.json", tmp_path / "m.json", base=base)
    assert env["PLAIN"] == "kept" and env["PATH"] == "/usr/bin"
    assert not set(secrets) - {"PLAIN"} & set(env)
    assert env["AUTORESEARCH_HARNESS"].endswith("h.json")


def test_peak_memory_of_the_tree_is_sampled(tmp_path: Path) -> None:
    code = "import time\nblob = bytearray(300 << 20)\nblob[::4096] = b'x' * len(blob[::4096])\ntime.sleep(1.5)\n"
    r = _run(tmp_path, code)
    assert r.status == "invalid"  # no harness result, but the memory was seen
    assert r.peak_memory_mb > 250
    assert json.dumps(r.metrics) == "{}"


def test_trainings_share_a_lasting_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile's caches live under autoresearch's cache (not /tmp): a change recompiles only what it touched."""
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    env = training_env(tmp_path / "harness.json", tmp_path / "metrics.json")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "inductor")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "triton")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # a user's own setting wins
    assert training_env(tmp_path / "h.json", tmp_path / "m.json")["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"
