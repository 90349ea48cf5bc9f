"""The no-LLM search agent: valid proposals from the real template, learning from the history, the loop."""

from __future__ import annotations

import sys
from pathlib import Path

from autoresearch.agent.base import AgentContext
from autoresearch.agent.factory import load_agent
from autoresearch.agent.search import Dim, SearchAgent, parse_description, search_space
from autoresearch.resources import template_path
from autoresearch.backends.knobs import read_knobs
from autoresearch.harness.integrity import check_script
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.loop import Engine, EngineOptions
from autoresearch.harness.prepare import Prepared

sys.path.insert(0, str(Path(__file__).parent))
from test_engine import make_run  # noqa: E402

TEMPLATE = template_path("torch").read_text()


def _ctx(script: str, history: list[dict]) -> AgentContext:
    return AgentContext(script=script, history=history, best_val_bpb=2.3, noise_sigma=None,
                        profile={"seq_len": 256}, hardware="test", time_budget=30)


def test_space_follows_the_knobs() -> None:
    dims = {d.name: d for d in search_space({k: v.value for k, v in read_knobs(TEMPLATE).items()})}
    assert dims["MATRIX_LR"] == Dim("MATRIX_LR", "log", 0.01, 0.16)
    assert dims["DEVICE_BATCH_SIZE"].choices == (2, 4, 8, 16, 32)
    assert dims["DEPTH"].kind == "int" and (dims["DEPTH"].low, dims["DEPTH"].high) == (2, 6)
    assert dims["MUON_MOMENTUM"].low == 0.8 and dims["VALUE_EMBEDS"].kind == "bool"
    assert "WINDOW_PATTERN" not in dims and "ADAM_BETAS" not in dims  # strings and tuples stay fixed


def test_proposals_are_valid_scripts_and_parse_back() -> None:
    agent = load_agent("search")
    assert isinstance(agent, SearchAgent)
    history = [{"index": 0, "status": "keep", "val_bpb": 2.3, "description": "baseline"}]
    seen = set()
    for i in range(6):
        p = agent.propose(_ctx(TEMPLATE, history))
        assert check_script(p.source).ok
        params = parse_description(p.description)
        assert params
        knobs = {k: v.value for k, v in read_knobs(p.source).items()}
        assert all(knobs[k] == v for k, v in params.items())
        assert knobs["WIDTH"] % knobs["HEAD_DIM"] == 0
        assert knobs["TOTAL_BATCH_SIZE"] >= knobs["DEVICE_BATCH_SIZE"] * 256
        seen.add(p.description)
        history.append({"index": i + 1, "status": "discard", "val_bpb": 2.3 + 0.01 * i, "description": p.description})
    assert len(seen) == 6


def test_a_restarted_agent_learns_the_history() -> None:
    first = SearchAgent(seed=1)
    history = [{"index": 0, "status": "keep", "val_bpb": 2.3, "description": "baseline"}]
    for i in range(4):
        p = first.propose(_ctx(TEMPLATE, history))
        history.append({"index": i + 1, "status": "crash" if i == 2 else "discard", "val_bpb": None if i == 2 else 2.4,
                        "description": p.description})
    again = SearchAgent(seed=2)
    again.propose(_ctx(TEMPLATE, history))
    done = [t for t in again.study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and sorted(t.value for t in done)[-1] == 1e9  # the crash scored as a failure


def test_cmaes_moves_through_generations_toward_a_better_learning_rate() -> None:
    """CMA-ES learns only from trials told as the ones it asked: its generations must advance."""
    import math

    agent = load_agent("search:cmaes")
    assert isinstance(agent, SearchAgent) and agent.name == "search:cmaes"
    history = [{"index": 0, "status": "keep", "val_bpb": 3.0, "description": "baseline"}]
    lrs = []
    for i in range(60):
        p = agent.propose(_ctx(TEMPLATE, history))
        knobs = {k: v.value for k, v in read_knobs(p.source).items()}
        lrs.append(knobs["MATRIX_LR"])
        # a synthetic objective: the best MATRIX_LR is 0.1 (log distance), the other knobs do not matter
        history.append({"index": i + 1, "status": "discard", "val_bpb": 2.0 + abs(math.log(knobs["MATRIX_LR"] / 0.1)),
                        "description": p.description})
    generations = {t.system_attrs.get("cma:generation") for t in agent.study.trials if t.state.name == "COMPLETE"}
    assert max(g for g in generations if g is not None) >= 2  # the optimizer has been told whole generations
    early, late = lrs[:15], lrs[-15:]
    dist = lambda xs: sum(abs(math.log(x / 0.1)) for x in xs) / len(xs)  # noqa: E731
    assert dist(late) < dist(early)


def test_the_loop_runs_with_the_search_agent(tmp_path: Path, stdlib_small: Prepared) -> None:
    run = make_run(tmp_path, stdlib_small, TEMPLATE, max_steps=8, policy="greedy")
    Engine(run, load_agent("search"), EngineOptions(max_experiments=3), log=lambda s: None).run()
    exps = Ledger(run.path).experiments()
    assert len(exps) == 3 and exps[0].status == "keep"
    assert all(e.description.startswith("search: ") and e.status in ("keep", "discard", "crash", "oom", "timeout")
               for e in exps[1:])
    assert run.foreign_changes() == []
