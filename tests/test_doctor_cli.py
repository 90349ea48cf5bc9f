"""`autoresearch doctor` and CLI error handling, as a user runs them (real subprocesses, real HTTP)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

TAGS = {
    "models": [
        {
            "name": "qwen2.5-coder:7b",
            "model": "qwen2.5-coder:7b",
            "modified_at": "2026-11-01T10:00:00Z",
            "size": 4683087332,
            "digest": "2b0496514337a3d5901f1d253d01726c890b721e891335a56d6e08cedf3e2cb0",
            "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
        }
    ]
}


class _Ollama(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/api/tags":
            body = json.dumps(TAGS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def ollama_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ollama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _env(tmp_path: Path, host: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OLLAMA_HOST=host,
        AUTORESEARCH_CACHE=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        AUTORESEARCH_CONFIG_DIR=str(tmp_path / "config" / "autoresearch"),
    )
    return env


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoresearch.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def test_doctor_json_with_a_live_ollama(tmp_path: Path, ollama_server: str) -> None:
    out = _cli(["doctor", "--json"], _env(tmp_path, ollama_server))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {"hardware", "backend", "profile", "llm", "datasets"} <= set(report)
    assert report["llm"]["reachable"] is True
    assert [m["name"] for m in report["llm"]["models"]] == ["qwen2.5-coder:7b"]
    assert report["hardware"]["cpu_threads"] >= 1
    assert report["backend"]["name"] == report["profile"]["backend"]
    assert report["datasets"]["prepared"] == []
    # no dataset yet: a problem that says which command fixes it
    fixes = [p["fix"] for p in report["problems"]]
    assert any("autoresearch prepare" in f for f in fixes)
    assert all(p["fix"] for p in report["problems"])


def test_doctor_report_with_a_dead_ollama(tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    out = _cli(["doctor"], _env(tmp_path, host))
    assert out.returncode == 0, out.stderr
    assert "Profile" in out.stdout and "Backend" in out.stdout
    assert f"no Ollama server answers at {host}" in out.stdout
    assert "ollama serve" in out.stdout and "OLLAMA_HOST" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_config_file_overrides_profile_and_host(tmp_path: Path, ollama_server: str) -> None:
    env = _env(tmp_path, "")
    env.pop("OLLAMA_HOST")
    cfg = Path(env["AUTORESEARCH_CONFIG_DIR"])
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(f'[llm]\nollama_host = "{ollama_server}"\n[profile]\ntime_budget = 42\n')
    report = json.loads(_cli(["doctor", "--json"], env).stdout)
    assert report["profile"]["time_budget"] == 42
    assert report["llm"]["reachable"] is True


def test_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path, "http://127.0.0.1:1")
    cfg = Path(env["AUTORESEARCH_CONFIG_DIR"])
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("[llm\nbroken")
    out = _cli(["doctor", "--no-llm"], env)
    assert out.returncode == 1
    assert "is not valid TOML" in out.stderr and "Traceback" not in out.stderr
    debug = _cli(["--debug", "doctor", "--no-llm"], env)
    assert "Traceback" in debug.stderr


def test_unknown_dataset_lists_choices_without_traceback(tmp_path: Path) -> None:
    out = _cli(["prepare", "--dataset", "no-such-dataset", "--vocab", "512"], _env(tmp_path, "http://127.0.0.1:1"))
    assert out.returncode == 1
    assert "stdlib" in out.stderr and "tinystories" in out.stderr
    assert "Traceback" not in out.stderr
