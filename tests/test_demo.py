"""`autoresearch demo` as a new user runs it: a fresh HOME (no config, no prepared data, no Ollama), no terminal.

It prepares the stdlib corpus, trains the baseline with two seeds, decides experiments of the search agent,
stops by itself within its time limit, prints the results table, and writes the report and the plot; the run
directory, the ledger, results.tsv, the report and the plot must agree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_on_a_fresh_machine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTORESEARCH_", "OLLAMA_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
               OLLAMA_HOST="http://127.0.0.1:9")  # no Ollama here (port 9 answers nothing)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "autoresearch", "demo"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    assert "researcher: the search agent (no LLM): no Ollama server answers" in text
    assert "[exp 0] baseline, 2 seed(s)" in text and "[exp 0] baseline val_bpb" in text
    assert re.search(r"\[exp [1-9]\d*\] (KEEP|DISCARD)", text), text[-3000:]
    assert "stopped: the time limit" in text
    assert wall < 6.5 * 60, f"the demo took {wall:.0f} s"

    runs = tmp_path / "runs"
    (run,) = [p for p in runs.iterdir() if p.name.startswith("demo-")]
    state = run / ".autoresearch"
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    decisions = {e["index"]: e for e in events if e["event"] == "decision"}
    assert decisions[0]["status"] == "keep" and len(decisions) >= 3
    rows = (state / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == len(decisions)
    kept = [d for d in decisions.values() if d["status"] == "keep"]
    best = min(kept, key=lambda d: d["val_bpb"])  # nothing is reverted in a demo: the lowest kept is the best

    report = state / "report" / "report.md"
    plot = state / "report" / "progress.png"
    assert f"report: {report}" in text and f"plot:   {plot}" in text
    md = report.read_text()
    assert f"{best['val_bpb']:.6f}" in md and run.name in md
    for index, d in decisions.items():
        assert re.search(rf"\|\s*{index}\s*\|\s*{d['status']}\b", md), f"experiment {index} missing from the report"
    head = plot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width >= 1000 and height >= 500
    # the results table printed at the end is the run's
    assert f"best val_bpb {best['val_bpb']:.6f}" in text
