"""The loop with the real LLM agent against a real HTTP server on 127.0.0.1 (scripted replies): a change
that crashes is repaired from its traceback, and the run keeps a copy of the prompts it used."""

from __future__ import annotations

import sys
from pathlib import Path

from autoresearch.agent.factory import load_agent
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.loop import Engine, EngineOptions
from autoresearch.harness.prepare import Prepared

sys.path.insert(0, str(Path(__file__).parent))
from llm_servers import FakeLLM, LLMServer  # noqa: E402
from test_engine import TEMPLATE, make_run  # noqa: E402

TYPO = ("Description: a bigger softcap\n<<<<<<< SEARCH\nLOGIT_SOFTCAP = 15.0  # logits = cap * tanh(logits / cap); 0 disables\n"
        "=======\nLOGIT_SOFTCAP = 30.0  # logits = cap * tanh(logits / cap); 0 disables\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\n        x = x0 = rms_norm(self.embed(idx))\n=======\n        x = x0 = rms_norm(self.embedding(idx))\n"
        ">>>>>>> REPLACE\n")
FIX = ("Description: a bigger softcap (fixed the attribute name)\n<<<<<<< SEARCH\n        x = x0 = rms_norm(self.embedding(idx))\n"
       "=======\n        x = x0 = rms_norm(self.embed(idx))\n>>>>>>> REPLACE\n")


def test_the_llm_agent_repairs_its_crash_from_the_traceback(tmp_path: Path, stdlib_small: Prepared) -> None:
    server = LLMServer()
    try:
        FakeLLM.script = [TYPO, FIX]
        run = make_run(tmp_path, stdlib_small, TEMPLATE, max_steps=8)
        agent = load_agent("openai:tiny", base_url=server.url + "/v1")
        Engine(run, agent, EngineOptions(max_experiments=2, policy="greedy"), log=lambda s: None).run()
    finally:
        server.close()
    base, exp = Ledger(run.path).experiments()
    assert exp.repairs == 1 and [r.outcome for r in exp.superseded_trainings + exp.trainings] == ["crash", "ok"], exp
    assert exp.description == "a bigger softcap (fixed the attribute name)"
    repair_prompt = FakeLLM.seen[1]["body"]["messages"][-1]["content"]
    assert "AttributeError" in repair_prompt and "embedding" in repair_prompt
    assert "self.embedding(idx)" in FakeLLM.seen[1]["body"]["messages"][-1]["content"]  # the broken script is shown
    final = run.repo.git.show(f"{exp.commit}:train.py")
    assert "LOGIT_SOFTCAP = 30.0" in final and "self.embed(idx)" in final
    digest = next(e["agent"]["prompts"] for e in Ledger(run.path).events() if e["event"] == "experiment_started" and e["index"] == 1)
    kept = run.state / "prompts" / digest
    assert sorted(p.name for p in kept.iterdir()) == sorted(p.name for p in (Path(__file__).parents[1] / "prompts").glob("*.md"))


def test_an_unreachable_model_is_waited_for_and_shown_in_status(tmp_path: Path, stdlib_small: Prepared) -> None:
    import threading
    import time

    from autoresearch.engine.status import format_status, run_status

    server = LLMServer()
    try:
        FakeLLM.script = [503] * 1000
        run = make_run(tmp_path, stdlib_small, TEMPLATE, max_steps=4)
        cfg = run.config()
        cfg["agent"] = "openai:tiny"
        (run.state / "config.json").write_text(__import__("json").dumps(cfg))
        agent = load_agent("openai:tiny", base_url=server.url + "/v1")
        agent.provider.backoff = 0.01  # type: ignore[attr-defined]
        engine = Engine(run, agent, EngineOptions(max_experiments=2, policy="greedy", agent_backoff=(0.2,)),
                        log=lambda s: None)
        thread = threading.Thread(target=engine.run)
        thread.start()
        deadline = time.monotonic() + 120
        while True:
            report = run_status(run)
            if report["agent"].get("state") == "unavailable" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        engine.request_stop()
        thread.join(timeout=60)
    finally:
        server.close()
    assert report["agent"]["state"] == "unavailable" and "HTTP 503" in report["agent"]["message"]
    assert "UNREACHABLE since" in format_status(report) and "no experiment is spent" in format_status(report)
    assert [e.status for e in Ledger(run.path).experiments()] == ["keep"]  # the outage cost no experiment
