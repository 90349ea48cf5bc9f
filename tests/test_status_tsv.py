"""`autoresearch status` on a results.tsv alone: upstream's real one (126 rows), and one of ours away from its run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

from autoresearch.cli import main

sys.path.insert(0, str(Path(__file__).parent))
import fixture_run  # noqa: E402


def test_upstreams_results_tsv() -> None:
    out = CliRunner().invoke(main, ["status", str(fixture_run.UPSTREAM_TSV), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert len(report["experiments"]) == 126 and report["counts"] == {"keep": 23, "discard": 102, "crash": 1}
    assert report["best"] == {"index": 118, "val_bpb": 0.969686, "commit": "438a26e"}
    assert report["baseline_val_bpb"] == 0.9979
    second = report["experiments"][1]
    assert abs(second["delta"] - (0.986041 - 0.9979)) < 1e-9  # against the best before it (upstream's rule)
    crash = next(x for x in report["experiments"] if x["status"] == "crash")
    assert crash["val_bpb"] is None  # upstream writes 0.000000 for a crash
    text = CliRunner().invoke(main, ["status", str(fixture_run.UPSTREAM_TSV)]).output
    assert "read from a results.tsv alone" in text and "best val_bpb 0.969686 (experiment 118" in text


def test_our_results_tsv_without_its_run(tmp_path: Path) -> None:
    run = fixture_run.build(tmp_path / "runs" / "mar8", experiments=12, open_status=None, stopped=True)
    copy = tmp_path / "elsewhere" / "results.tsv"
    copy.parent.mkdir()
    shutil.copy(run.state / "results.tsv", copy)
    shutil.rmtree(run.path)
    report = json.loads(CliRunner().invoke(main, ["status", str(copy), "--json"]).output)
    assert report["run"] == "elsewhere" and len(report["experiments"]) == 12
    assert report["experiments"][1]["seeds"] == 2 and report["experiments"][1]["test_bpb"] is not None
    out = CliRunner().invoke(main, ["status", str(tmp_path / "missing.tsv")])
    assert out.exit_code == 2 and "is not a file" in out.output
