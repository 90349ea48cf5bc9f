"""A stop is honoured within seconds while the agent writes, even when its server never answers.

Found by an audit: with a silent LLM server (it accepts and never answers) the engine waited 3 x 300 s and
ignored SIGTERM and SIGINT the whole time. Here a real engine subprocess proposes through a real HTTP server
on 127.0.0.1 speaking Ollama's protocol that goes silent on the chat request; a control-file stop, then (after
a resume) SIGTERM, must each end the engine within seconds, the abandoned proposal said as such.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autoresearch.harness.prepare import Prepared

sys.path.insert(0, str(Path(__file__).parent))
from llm_servers import FakeLLM, LLMServer  # noqa: E402
from tiny_profile import write_config  # noqa: E402


def _events(run: Path) -> list[dict]:
    path = run / ".autoresearch" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _proposing_seen(run: Path, after: int) -> bool:
    chats = [s for s in FakeLLM.seen if s.get("path") == "/api/chat"]
    return len(chats) > after and any(e["event"] == "phase" and e["phase"] == "proposing" for e in _events(run))


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait(predicate, proc: subprocess.Popen[str], timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        assert proc.poll() is None, f"the engine exited before {what}:\n{proc.stdout.read() if proc.stdout else ''}"
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_while_the_agent_is_silent(tmp_path: Path, stdlib_small: Prepared) -> None:
    srv = LLMServer()
    try:
        FakeLLM.models = {"qwen2.5-coder:7b": 4_700_000_000}
        FakeLLM.script = ["silent", "silent", "silent"]
        write_config(tmp_path / "config", stdlib_small.directory.parent, tmp_path / "runs", budget=3)
        env = dict(os.environ, AUTORESEARCH_CONFIG_DIR=str(tmp_path / "config"), OLLAMA_HOST=srv.url,
                   PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "autoresearch", "run", "--headless", "--tag", "t", "--agent", "ollama:qwen2.5-coder:7b"]
        run = tmp_path / "runs" / "t"

        first = _start(argv, env)
        _wait(lambda: _proposing_seen(run, 0), first, 240, "the first proposal")
        time.sleep(1.0)  # well inside the silent reply
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "autoresearch", "stop", "t", "--runs-dir", str(tmp_path / "runs")],
                       env=env, check=True, capture_output=True, timeout=60)
        out, _ = first.communicate(timeout=30)
        took = time.monotonic() - t0
        assert first.returncode == 0, out
        assert took < 10, f"the control stop took {took:.1f} s"
        assert "the proposal is abandoned: stopped by the user" in out
        assert _events(run)[-1]["event"] == "stopped"

        second = _start(argv, env)  # resumes: the baseline is done, so it proposes at once
        chats_before = len([s for s in FakeLLM.seen if s.get("path") == "/api/chat"])
        _wait(lambda: _proposing_seen(run, chats_before), second, 120, "the second proposal")
        time.sleep(1.0)
        t0 = time.monotonic()
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
        took = time.monotonic() - t0
        assert second.returncode == 0, out
        assert took < 10, f"SIGTERM took {took:.1f} s"
        assert "SIGTERM: stopping (the agent's reply is abandoned)" in out
        stopped = [e for e in _events(run) if e["event"] == "stopped"][-1]
        assert stopped["reason"] == "SIGTERM: stopped while the agent was writing"
        assert not [e for e in _events(run) if e["event"] == "experiment_started" and e["index"] > 0]  # nothing spent
    finally:
        srv.close()


def test_a_context_window_too_small_stops_the_run_at_once(tmp_path: Path, stdlib_small: Prepared) -> None:
    """A llama.cpp server started with a tiny context: the run says so after the baseline and stops, instead of
    ten 'bad edit' replies and the wrong diagnosis."""
    srv = LLMServer()
    try:
        FakeLLM.context = 512
        write_config(tmp_path / "config", stdlib_small.directory.parent, tmp_path / "runs", budget=3)
        env = dict(os.environ, AUTORESEARCH_CONFIG_DIR=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
        out = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--headless", "--tag", "c", "--agent",
                              "openai:tiny", "--llm-url", srv.url + "/v1"], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "stopped: the LLM cannot take a prompt: the model's context window is 512 tokens" in out.stdout
        assert "-c 8192" in out.stdout and not [s for s in FakeLLM.seen if s["path"] == "/v1/chat/completions"]
        errors = [e for e in _events(tmp_path / "runs" / "c") if e["event"] == "agent_error"]
        assert len(errors) == 1
    finally:
        srv.close()
