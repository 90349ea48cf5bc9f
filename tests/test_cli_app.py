"""The app's commands without a terminal (scripts, CI, pipes) and `watch --serve` (a real HTTP server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fixture_run

CLI = [sys.executable, "-m", "autoresearch"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def test_no_subcommand_without_a_terminal_prints_help() -> None:
    out = run_cli()
    assert out.returncode == 0 and "Usage:" in out.stdout and "watch" in out.stdout


def test_watch_without_a_terminal_says_what_to_use(tmp_path: Path) -> None:
    fixture_run.build(tmp_path / "runs" / "mar8", experiments=3, open_status=None, stopped=True)
    out = run_cli("watch", "mar8", "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "watch needs a terminal" in out.stderr and "autoresearch status" in out.stderr
    assert "Traceback" not in out.stderr


def test_watch_of_a_missing_run_is_one_clear_line(tmp_path: Path) -> None:
    out = run_cli("watch", "nope", "--runs-dir", str(tmp_path))
    assert out.returncode == 1 and "no run 'nope'" in out.stderr and "Traceback" not in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_watch_serve_serves_the_app_on_localhost_only(tmp_path: Path) -> None:
    fixture_run.build(tmp_path / "runs" / "mar8", experiments=3, open_status=None, stopped=True)
    port = _free_port()
    proc = subprocess.Popen([*CLI, "watch", "mar8", "--runs-dir", str(tmp_path / "runs"), "--serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        page = ""
        end = time.monotonic() + 60
        while time.monotonic() < end and not page:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            except OSError:
                time.sleep(0.3)
        assert "autoresearch" in page and "<html" in page.lower()
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening.strip():  # where ss exists: bound to the loopback address only
            assert all("127.0.0.1:" in line for line in listening.strip().splitlines()), listening
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "no login" in out and f"ssh -N -L {port}:127.0.0.1:{port}" in out
