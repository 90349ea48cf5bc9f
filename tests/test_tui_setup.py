"""The setup screen (a new run) with Textual's Pilot: a real HTTP server in Ollama's protocol on 127.0.0.1 (with
models, and pulling one), no server at all, a dataset missing and prepared from the screen; a snapshot."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoresearch.hardware import Hardware, profile_for
from autoresearch.tui.screens.setup import SetupScreen
from test_tui_snapshots import compare
from tui_harness import make_app, run_async, screen_text, until

sys.path.insert(0, str(Path(__file__).parent))
from llm_servers import FakeLLM, LLMServer  # noqa: E402

HW = Hardware(system="Linux", machine="x86_64", cpu_model="AMD EPYC 7B13", cpu_cores=8, cpu_threads=16, ram_gb=23.5)
MODELS = {"qwen2.5-coder:7b": 4_700_000_000, "qwen2.5-coder:32b": 19_800_000_000, "gemma3:270m": 290_000_000}


@pytest.fixture()
def ollama() -> Iterator[str]:
    srv = LLMServer()
    FakeLLM.script, FakeLLM.seen, FakeLLM.models = [], [], dict(MODELS)
    yield srv.url
    srv.close()


def planner(host: str, data_dir: Path, prepared: bool = True) -> Any:
    return lambda: {"hardware": HW, "summary": "", "profile": profile_for(HW), "data_dir": data_dir,
                    "prepared": {("stdlib", 2048): 8_100_000} if prepared else {}, "ollama_host": host}


async def open_setup(pilot: Any, app: Any, screen: SetupScreen) -> SetupScreen:
    app.push_screen(screen)
    await until(pilot, lambda: app.screen is screen and screen.facts, what="the machine")
    return screen


def test_ollama_models_with_what_fits_and_a_pull(ollama: str, tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(120, 60)) as pilot:
            setup = await open_setup(pilot, app, SetupScreen(tmp_path / "runs", planner=planner(ollama, tmp_path)))
            await until(pilot, lambda: "3 model(s) on" in screen_text(app), what="the models")
            panel = setup.query_one("#researcher")
            assert panel.spec() == "ollama:qwen2.5-coder:7b"  # the largest that fits in 23.5 GB next to a training
            assert "AMD EPYC 7B13, 8 cores, 23.5 GB RAM" in screen_text(app) and "profile  cpu" in screen_text(app)
            await until(pilot, lambda: not setup.query_one("#start").disabled, what="Start on")
            assert "ready" in screen_text(app)
            await pilot.click("#ollama-model")
            await pilot.pause(0.2)
            assert "too big next to the training" in screen_text(app)  # the 32b
            await pilot.press("escape")
            setup.query_one("#ollama-other").value = "llama3.2:3b"
            await until(pilot, lambda: setup.query_one("#start").disabled, what="Start off: not pulled")
            assert "llama3.2:3b is not on the Ollama server: press Pull" in screen_text(app)
            await pilot.click("#pull")
            await until(pilot, lambda: "pulled llama3.2:3b" in screen_text(app), what="the pull")
            await until(pilot, lambda: not setup.query_one("#start").disabled, what="Start on")
            assert [s for s in FakeLLM.seen if s["path"] == "/api/pull"][0]["body"]["model"] == "llama3.2:3b"
    run_async(main())


def test_no_ollama_offers_the_search_agent_and_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(120, 60)) as pilot:
            setup = await open_setup(pilot, app, SetupScreen(tmp_path / "runs",
                                                             planner=planner("http://127.0.0.1:9", tmp_path)))
            await until(pilot, lambda: "The search agent is chosen" in screen_text(app), what="the fallback")
            assert "no Ollama server answers at http://127.0.0.1:9" in screen_text(app)
            assert setup.query_one("#researcher").spec() == "search"
            await until(pilot, lambda: not setup.query_one("#start").disabled, what="Start on")
            setup.query_one("#agent-kind").value = "ollama"  # the user insists: Start says what is missing
            await until(pilot, lambda: setup.query_one("#start").disabled, what="Start off")
            assert "Start needs: the researcher: no Ollama server answers" in screen_text(app)
            setup.query_one("#agent-kind").value = "openai"
            setup.query_one("#openai-url").value = "http://127.0.0.1:9/v1"
            setup.query_one("#openai-test").press()
            await until(pilot, lambda: "no server answers at http://127.0.0.1:9/v1" in screen_text(app), what="test")
            assert setup.query_one("#start").disabled
    run_async(main())


def test_a_missing_dataset_is_prepared_from_the_screen(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    stdlib = sorted(Path(os.__file__).parent.glob("*.py"))[:40]  # real text, about 1 MB: enough for vocab 2048
    corpus.write_text("\n\n".join(p.read_text(errors="replace") for p in stdlib))

    async def main() -> None:
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(120, 60)) as pilot:
            setup = await open_setup(pilot, app, SetupScreen(
                tmp_path / "runs", planner=planner("http://127.0.0.1:9", tmp_path / "data", prepared=False)))
            await until(pilot, lambda: "The search agent is chosen" in screen_text(app), what="the researcher")
            assert setup.query_one("#start").disabled
            assert "Start needs: the data: prepare" in screen_text(app)
            setup.query_one("#dataset-path").value = str(corpus)
            await until(pilot, lambda: "not prepared yet: Prepare tokenizes" in screen_text(app), what="the path")
            setup.query_one("#prepare").press()
            await until(pilot, lambda: "is prepared in" in screen_text(app) or "could not" in screen_text(app),
                        timeout=120, what="prepared")
            assert "could not be prepared" not in screen_text(app), screen_text(app)
            await until(pilot, lambda: not setup.query_one("#start").disabled, what="Start on")
            setup.query_one("#dataset-path").value = str(tmp_path / "nope.txt")
            await until(pilot, lambda: "no such file or folder" in screen_text(app), what="a wrong path")
            assert setup.query_one("#start").disabled
    run_async(main())
    assert any((tmp_path / "data").glob("local-corpus-*-v2048/manifest.json"))


def test_setup_snapshot(tmp_path: Path) -> None:
    async def main() -> str:
        app = make_app(Path("runs"))
        async with app.run_test(size=(100, 60)) as pilot:
            setup = await open_setup(pilot, app, SetupScreen(Path("runs"),
                                                             planner=planner("http://127.0.0.1:9", Path("data"))))
            await until(pilot, lambda: "The search agent is chosen" in screen_text(app), what="the researcher")
            setup.query_one("#tag").value = "dec01"  # the default is today's date
            setup.query_one("#tag").cursor_position = 5
            await pilot.pause(0.3)
            return app.export_screenshot()

    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        compare("setup-100x60", run_async(main()))
    finally:
        os.chdir(old)


def test_no_network_says_so_and_offers_stdlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepare a hub dataset with no network (a hub endpoint that refuses connections): the screen says why
    and offers stdlib; Start stays off."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")

    async def main() -> None:
        app = make_app(tmp_path / "runs")
        async with app.run_test(size=(120, 60)) as pilot:
            setup = await open_setup(pilot, app, SetupScreen(
                tmp_path / "runs", planner=planner("http://127.0.0.1:9", tmp_path / "data", prepared=False)))
            setup.query_one("#dataset").value = "tinystories"
            await until(pilot, lambda: "TinyStories" in screen_text(app) and setup.query_one("#prepare").display,
                        what="tinystories not prepared")
            setup.query_one("#prepare").press()
            await until(pilot, lambda: "could not be prepared" in screen_text(app), timeout=120, what="the failure")
            text = screen_text(app)
            assert "stdlib needs no network: choose it to start tonight" in text
            assert setup.query_one("#start").disabled and setup.query_one("#prepare").display  # it can be tried again
    run_async(main())
