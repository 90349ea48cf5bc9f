"""Proposing while training (issue 15): the prepared proposal, its rebase onto a new best, and who may do it."""

from __future__ import annotations

import time

from autoresearch.agent.base import Agent, AgentContext, AgentUnavailable, Proposal
from autoresearch.agent.llm import LLMAgent
from autoresearch.netaddr import on_this_machine
from autoresearch.agent.ollama import OllamaProvider
from autoresearch.agent.providers import OpenAIProvider
from autoresearch.engine.prefetch import Prepared

BASE = "A = 1\nB = 2\nC = 3\nD = 4\n"


class Editing(Agent):
    """Replaces one line of the script it is shown, after ``delay`` (or raises ``error``)."""

    def __init__(self, old: str, new: str, delay: float = 0.0, error: Exception | None = None) -> None:
        self.old, self.new, self.delay, self.error = old, new, delay, error
        self.seen: list[AgentContext] = []

    def propose(self, ctx: AgentContext) -> Proposal:
        self.seen.append(ctx)
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return Proposal(f"set {self.new}", ctx.script.replace(self.old, self.new), {"model": "test"})


def ctx(script: str = BASE) -> AgentContext:
    return AgentContext(script=script, history=[{"index": 0, "status": "keep", "val_bpb": 2.0, "delta": None,
                                                 "description": "baseline"}], best_val_bpb=2.0, noise_sigma=None,
                        profile={}, hardware="test", time_budget=60.0)


def wait(p: Prepared) -> None:
    assert p.wait(lambda: True, 0.01)


def test_the_best_unchanged_takes_the_proposal_as_it_is() -> None:
    p = Prepared(Editing("C = 3", "C = 30", delay=0.05), ctx(), "base")
    assert not p.ready
    wait(p)
    proposal, why = p.for_best("base", BASE)
    assert why == "" and proposal.source == "A = 1\nB = 2\nC = 30\nD = 4\n" and p.seconds() >= 0.05


def test_a_new_best_gets_the_change_rebased_onto_it() -> None:
    p = Prepared(Editing("C = 3", "C = 30"), ctx(), "base")
    wait(p)
    kept = BASE.replace("A = 1", "A = 10")  # the experiment that trained meanwhile was kept
    proposal, why = p.for_best("kept", kept)
    assert why == "" and proposal.source == "A = 10\nB = 2\nC = 30\nD = 4\n"
    assert proposal.description == "set C = 30" and proposal.meta == {"model": "test", "rebased_from": "base"}


def test_a_change_that_no_longer_applies_is_not_used() -> None:
    p = Prepared(Editing("C = 3", "C = 30"), ctx(), "base")
    wait(p)
    proposal, why = p.for_best("kept", BASE.replace("C = 3", "C = 5"))  # the kept change rewrote the same line
    assert proposal is None and why == "it no longer applies to the new best"


def test_an_agent_failure_is_handed_over_not_raised() -> None:
    p = Prepared(Editing("C = 3", "C = 30", error=AgentUnavailable("no server at 10.0.0.2")), ctx(), "base")
    wait(p)
    proposal, why = p.for_best("base", BASE)
    assert proposal is None and "AgentUnavailable: no server at 10.0.0.2" in why


def test_a_stop_does_not_wait_for_the_agent() -> None:
    p = Prepared(Editing("C = 3", "C = 30", delay=5.0), ctx(), "base")
    t0 = time.monotonic()
    asked = []
    assert not p.wait(lambda: (asked.append(1), len(asked) < 3)[1], 0.01)
    assert time.monotonic() - t0 < 1.0 and not p.ready


def test_only_a_model_on_another_machine_works_alongside_the_training() -> None:
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434", "http://[::1]:8000/v1", "127.0.0.2:11434"):
        assert on_this_machine(url), url
    for url in ("https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "https://api.anthropic.com"):
        assert not on_this_machine(url), url
    local = LLMAgent(OpenAIProvider("m", "http://127.0.0.1:8080/v1"))
    hosted = LLMAgent(OpenAIProvider("m", "https://llm.example.org/v1", api_key="k"))
    ollama = LLMAgent(OllamaProvider("qwen2.5-coder:7b", "http://127.0.0.1:11434"))
    assert not local.works_alongside_training(False) and hosted.works_alongside_training(True)
    assert not ollama.works_alongside_training(False)
    assert not Editing("a", "b").works_alongside_training(False)  # the default: not
