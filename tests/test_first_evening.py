"""The first evening's fast parts: shipped templates and prompts, `init-prompts`, the researcher a run gets
when none is named (a real Ollama-protocol server on 127.0.0.1), and `run` saying which one and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.agent.base import AgentError
from autoresearch.agent.choice import choose, suitable
from autoresearch.agent.llm import PROMPTS, make_llm_agent, prompt_digest, prompts_from
from autoresearch.harness.prepare import Prepared
from autoresearch.resources import copy_prompts, package_parent, prompt_names, prompts_dir, template_path

sys.path.insert(0, str(Path(__file__).parent))
from llm_servers import FakeLLM, LLMServer  # noqa: E402
from tiny_profile import write_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GB = 1_000_000_000


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    srv = LLMServer()
    yield srv.url
    srv.close()


def test_templates_and_prompts_are_package_data() -> None:
    assert template_path("torch").parent == package_parent() / "autoresearch" / "templates"
    assert "import autoresearch.harness" in template_path("torch").read_text() or \
        "from autoresearch.harness" in template_path("torch").read_text()
    assert template_path("mlx").is_file()
    assert {"program.md", "propose.md", "repair.md"} <= set(prompt_names())
    # the checkout's top-level files are the same files (one source of truth), not copies
    assert (REPO / "train_torch.py").resolve() == template_path("torch").resolve()
    assert (REPO / "prompts").resolve() == prompts_dir().resolve()
    wheel_data = (REPO / "pyproject.toml").read_text()
    assert '"templates/*.py"' in wheel_data and '"**/*.md"' in wheel_data


def test_init_prompts_copies_and_keeps_edits(tmp_path: Path) -> None:
    target = tmp_path / "my-prompts"
    out = subprocess.run([sys.executable, "-m", "autoresearch", "init-prompts", str(target)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"copied {len(prompt_names())} prompt(s) into {target}" in out.stdout and "--prompts" in out.stdout
    assert sorted(p.name for p in target.iterdir()) == prompt_names()
    (target / "program.md").write_text("You are a careful researcher. Change one thing at a time.\n")
    (target / "repair.md").unlink()
    again = subprocess.run([sys.executable, "-m", "autoresearch", "init-prompts", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert "copied 1 prompt(s)" in again.stdout and "kept your" in again.stdout and "program.md" in again.stdout
    assert (target / "program.md").read_text().startswith("You are a careful researcher")  # the edit survives
    assert copy_prompts(target, force=True) and (target / "program.md").read_text() == (PROMPTS / "program.md").read_text()


def test_an_edited_prompts_directory_is_used_and_checked(tmp_path: Path, server: str) -> None:
    mine = tmp_path / "p"
    copy_prompts(mine)
    (mine / "program.md").write_text("Only ever change the learning rates.\n")
    agent = make_llm_agent("ollama", "qwen2.5-coder:7b", config={"prompts": str(mine)}, host=server)
    assert agent.prompts == mine.resolve() and prompt_digest(agent.prompts) != prompt_digest(PROMPTS)
    (mine / "propose.md").unlink()
    with pytest.raises(AgentError, match="lacks propose.md: `autoresearch init-prompts"):
        prompts_from(mine)
    with pytest.raises(AgentError, match="does not exist: `autoresearch init-prompts"):
        prompts_from(tmp_path / "nowhere")
    assert prompts_from(None) == PROMPTS


def test_the_researcher_chosen_when_none_is_named(server: str) -> None:
    FakeLLM.models = {"nomic-embed-text:latest": 270_000_000, "gemma3:270m": 290_000_000,
                      "qwen2.5-coder:7b": int(4.7 * GB), "qwen2.5-coder:32b": 20 * GB, "llama3.2-vision:11b": 8 * GB}
    pick = choose(None, server, 24.0)
    assert pick.spec == "ollama:qwen2.5-coder:7b" and "fits in 24 GB" in pick.reason  # 32b is too big next to training
    assert choose(None, server, 64.0).spec == "ollama:qwen2.5-coder:32b"
    # an embedding model, a 270M model and an unknown family are never chosen
    assert [n for n, _ in suitable(list(FakeLLM.models.items()), None)] == ["qwen2.5-coder:32b", "qwen2.5-coder:7b"]
    small = choose(None, server, 6.0)
    assert small.spec == "search" and "no suitable coder model" in small.reason and "ollama pull" in small.reason
    dead = choose(None, "http://127.0.0.1:9", 24.0)
    assert dead.spec == "search" and "no Ollama server answers at http://127.0.0.1:9" in dead.reason
    assert choose("openai:gpt-5", server, 24.0).spec == "openai:gpt-5"  # the config's choice wins
    assert choose("baseline", server, 24.0).spec is None


def _env(tmp_path: Path, ollama: str) -> dict[str, str]:
    return dict(os.environ, OLLAMA_HOST=ollama, AUTORESEARCH_CONFIG_DIR=str(tmp_path / "config"))


def test_run_without_agent_says_which_researcher_and_records_it(tmp_path: Path, server: str,
                                                                 stdlib_small: Prepared) -> None:
    write_config(tmp_path / "config", stdlib_small.directory.parent, tmp_path / "runs")
    FakeLLM.models = {"qwen2.5-coder:7b": int(4.7 * GB)}
    base = [sys.executable, "-m", "autoresearch", "run", "--headless", "--dataset", "stdlib", "--max-experiments", "0"]
    out = subprocess.run([*base, "--tag", "a"], capture_output=True, text=True, timeout=300, env=_env(tmp_path, server))
    assert out.returncode == 0, out.stderr
    assert f"researcher: ollama:qwen2.5-coder:7b from Ollama at {server}" in out.stdout
    config = json.loads((tmp_path / "runs" / "a" / ".autoresearch" / "config.json").read_text())
    assert config["agent"] == "ollama:qwen2.5-coder:7b"
    # --agent baseline: the old behaviour (no researcher); a dead Ollama: the search agent, said why
    out = subprocess.run([*base, "--tag", "b", "--agent", "baseline"], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path, server))
    assert out.returncode == 0 and "researcher:" not in out.stdout
    assert json.loads((tmp_path / "runs" / "b" / ".autoresearch" / "config.json").read_text())["agent"] is None
    out = subprocess.run([*base, "--tag", "c"], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path, "http://127.0.0.1:9"))
    assert "researcher: the search agent (no LLM): no Ollama server answers" in out.stdout
    assert json.loads((tmp_path / "runs" / "c" / ".autoresearch" / "config.json").read_text())["agent"] == "search"
    # resuming a run keeps its own researcher: nothing is chosen again
    out = subprocess.run([*base, "--tag", "a"], capture_output=True, text=True, timeout=300, env=_env(tmp_path, server))
    assert "researcher:" not in out.stdout and "resuming run a" in out.stdout
