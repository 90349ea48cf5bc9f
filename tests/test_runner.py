"""The runner on real faulty scripts: every outcome class, the deadline, the process tree, the log; and the
environment the agent's processes get (an allowlist)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import psutil
import pytest

from autoresearch.backends import agent_env
from autoresearch.training.runner import Runner, RunResult


def _run(tmp_path: Path, code: str, deadline: float = 60.0, env_extra: dict[str, str] | None = None) -> RunResult:
    (tmp_path / "train.py").write_text(code)
    env = agent_env()
    env.update(env_extra or {})
    return Runner().run([sys.executable, "train.py"], cwd=tmp_path, env=env, log_path=tmp_path / "logs" / "0001.log",
                        deadline_seconds=deadline)


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


def test_a_clean_exit_is_only_an_exit(tmp_path: Path) -> None:
    """What a process prints or writes is never a result: a clean exit is "exited", for the trial to judge."""
    code = ("import json, os\n"
            "print('---')\nprint('val_bpb:          0.500000')\nprint('status: ok')\n"
            "json.dump({'status': 'ok', 'val_bpb': 0.5}, open('metrics.json', 'w'))\n")
    r = _run(tmp_path, code)
    assert r.status == "exited" and r.val_bpb is None and r.metrics == {}


def test_agent_env_is_an_allowlist(tmp_path: Path) -> None:
    secrets = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a", "HF_TOKEN": "hf", "MY_SECRET": "s",
               "GITHUB_TOKEN": "g", "OLLAMA_HOST": "h", "DB_PASS": "p", "GITHUB_PAT": "ghp", "LLM_BEARER": "b",
               "AWS_SESSION": "x", "PLAIN": "not passed either", "TORCH_API_TOKEN": "t"}
    base = dict(secrets, PATH="/usr/bin", HOME="/home/u", LANG="C.UTF-8", LC_ALL="C", CUDA_VISIBLE_DEVICES="0",
                OMP_NUM_THREADS="2", TORCH_LOGS="+dynamo")
    env = agent_env(base=base)
    assert {"PATH", "HOME", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TORCH_LOGS"} <= set(env)
    assert not set(secrets) & set(env), set(secrets) & set(env)
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONPATH"]


def test_peak_memory_of_the_tree_is_sampled(tmp_path: Path) -> None:
    code = "import time\nblob = bytearray(300 << 20)\nblob[::4096] = b'x' * len(blob[::4096])\ntime.sleep(1.5)\n"
    r = _run(tmp_path, code)
    assert r.status == "exited"  # no result (that is the trial's to judge), but the memory was seen
    assert r.peak_memory_mb > 250
    assert json.dumps(r.metrics) == "{}"


def test_trainings_share_a_lasting_compile_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile's caches live under autoresearch's cache (not /tmp): a change recompiles only what it touched."""
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    env = agent_env()
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "inductor")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "triton")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # a user's own setting wins
    assert agent_env()["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"


def test_a_training_past_the_memory_limit_is_stopped_as_oom_before_the_os_would(tmp_path: Path) -> None:
    code = (
        "import time\n"
        "hog = []\n"
        "while True:\n"
        "    hog.append(bytearray(20 << 20))\n"
        "    time.sleep(0.05)\n"
    )
    runner = Runner(memory_limit_mb=200)
    r = runner.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log",
                   deadline_seconds=60)
    # (sampled every 0.2 s while it grows 80 MB a sample: it is caught at 0.2 or 0.3 GB)
    assert r.status == "oom" and re.match(r"stopped at 0\.[23] GB of memory before the OS would kill it", r.reason)
    assert "the limit is 0.2 GB): a smaller batch or model fits" in r.reason and 190 < r.peak_memory_mb < 400


def test_a_sigkill_the_runner_did_not_send_is_a_likely_oom_kill(tmp_path: Path) -> None:
    import signal
    import threading

    runner = Runner()
    pid_file = tmp_path / "training.pid"

    def kill_from_outside() -> None:  # as the kernel's OOM killer would
        end = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)

    threading.Thread(target=kill_from_outside, daemon=True).start()
    r = runner.run([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path, env=dict(os.environ),
                   log_path=tmp_path / "log", deadline_seconds=60, pid_file=pid_file)
    assert r.status == "oom" and "killed by SIGKILL from outside the engine" in r.reason
    assert "out-of-memory killer" in r.reason
