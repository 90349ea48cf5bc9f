"""A scripted agent: the test double for the loop (never the product's agent).

Its proposals are search/replace edits of the current script, read from the JSON file named by
AR_SCRIPTED_EDITS: a list of {"description": str, "replace": [[old, new], ...], "repair": [[old, new], ...]?}. It
cycles through the list. ``repair`` (optional) is applied to a proposal the engine sends back (a crash, a
rejection); without it the agent gives up on that proposal.
Load it with `--agent plugin:scripted_agent:make` (tests/ on PYTHONPATH) or construct ScriptedAgent directly.
"""

from __future__ import annotations

import json
import os
from typing import Any

from autoresearch.agent.base import Agent, AgentContext, AgentError, Proposal


class ScriptedAgent(Agent):
    name = "scripted"

    def __init__(self, edits: list[dict[str, Any]]) -> None:
        self.edits = edits
        self.calls = 0
        self.repairs: list[str] = []

    def propose(self, ctx: AgentContext) -> Proposal:
        edit = self.edits[self.calls % len(self.edits)]
        self.calls += 1
        source = ctx.script
        for old, new in edit["replace"]:
            if old not in source:
                raise AgentError(f"scripted edit does not apply: {old!r} not in the script")
            source = source.replace(old, new, 1)
        return Proposal(edit["description"], source, {"scripted": self.calls})

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        self.repairs.append(feedback)
        edit = next((e for e in self.edits if e["description"] == proposal.description), None)
        if not edit or not edit.get("repair"):
            return None
        source = proposal.source
        for old, new in edit["repair"]:
            if old not in source:
                return None
            source = source.replace(old, new, 1)
        return Proposal(edit["description"] + " (repaired)", source, {"scripted": self.calls, "repair": True})


def make() -> ScriptedAgent:
    with open(os.environ["AR_SCRIPTED_EDITS"]) as f:
        return ScriptedAgent(json.load(f))
