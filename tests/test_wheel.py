"""The wheel installs and works outside the checkout: built from this tree, installed into a fresh virtual
environment, run from a temporary directory (`autoresearch train`, a headless run with one experiment).

The fresh environment gets autoresearch only from the wheel; its dependencies (torch and the rest, hundreds of
MB) are borrowed from this environment's site-packages through a path file added after the install, whose own
path files (this checkout's editable install) are not processed: the checkout cannot be imported from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from autoresearch.harness.prepare import Prepared
from autoresearch.resources import prompt_names

sys.path.insert(0, str(Path(__file__).parent))
from tiny_profile import write_config  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _sh(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert out.returncode == 0, f"{argv}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_wheel_works_outside_the_checkout(tmp_path: Path, stdlib_small: Prepared) -> None:
    wheels = tmp_path / "wheels"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)])
    wheel = next(wheels.glob("autoresearch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"autoresearch/templates/train_torch.py", "autoresearch/templates/train_mlx.py"} <= names
    assert {f"autoresearch/prompts/{n}" for n in prompt_names()} <= names and "autoresearch/tui/app.tcss" in names

    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    site = Path(_sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz-borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(tmp_path / "home"), AUTORESEARCH_CONFIG_DIR=str(tmp_path / "config"),
               AUTORESEARCH_CACHE=str(tmp_path / "cache"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    write_config(tmp_path / "config", stdlib_small.directory.parent, work / "runs", budget=3)
    where = _sh([str(python), "-c", "import autoresearch, autoresearch.backends as b, autoresearch.resources as r; "
                 "print(autoresearch.__file__); print(b.agent_env()['PYTHONPATH']); print(r.template_path('torch'))"],
                cwd=work, env=env).stdout.split()
    assert all(str(site) in w for w in where), where  # the package, the training's import path, the template
    assert not any(str(REPO) in w for w in where)

    cli = str(venv / "bin" / "autoresearch")
    trained = _sh([cli, "train", "--budget", "3"], cwd=work, env=env)
    assert "ok: val_bpb" in trained.stdout
    ran = _sh([cli, "run", "--headless", "--tag", "w", "--agent", "search", "--max-experiments", "2"], cwd=work, env=env)
    assert "[exp 1]" in ran.stdout and "stopped: 2 experiment(s) done" in ran.stdout
    run = work / "runs" / "w"
    statuses = [json.loads(line).get("status") for line in (run / ".autoresearch" / "events.jsonl").read_text().splitlines()
                if '"decision"' in line]
    assert len(statuses) == 2 and statuses[0] == "keep"
