"""What an agent is, as the engine sees it: given the context, propose a new train.py with a description.

Providers and edit formats (issue: the agent) build on this. The engine only needs ``propose`` and, after a
rejected or crashed proposal, ``repair``. An agent that cannot reach its model raises ``AgentUnavailable``
(the loop waits and retries, it does not burn experiments); any other failure raises ``AgentError``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol


class AgentError(Exception):
    """The agent failed to produce a usable proposal (malformed reply, no valid edit after retries)."""


class AgentUnavailable(AgentError):
    """The agent's model cannot be reached right now (server down, timeouts, rate limits)."""


@dataclass
class Proposal:
    description: str  # one line: what the change is and why (becomes the commit message)
    source: str  # the complete new train.py
    meta: dict[str, Any] = field(default_factory=dict)  # model, edit format, attempts, tokens...


@dataclass
class AgentContext:
    """Everything an agent may see. Never the test split's scores."""

    script: str  # the current best train.py
    history: list[dict[str, Any]]  # per experiment: index, status, val_bpb, delta, description
    best_val_bpb: float | None
    noise_sigma: float | None
    profile: dict[str, Any]
    hardware: str  # one line
    time_budget: float
    last_outcome: dict[str, Any] | None = None  # status, reason, log tail of the previous experiment
    backend: str = "torch"


class Agent(Protocol):
    name: str

    def propose(self, ctx: AgentContext) -> Proposal: ...

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        """A fixed proposal after ``feedback`` (integrity violations, a crash's traceback), or None to give up."""
        ...

# Optional, duck-typed: ``release(shared_memory: bool)`` frees the model's memory before a training;
# ``on_text`` (attribute) receives the reply as it streams, for progress.


def load_agent(spec: str, *, config: dict[str, Any] | None = None, **flags: Any) -> Agent:
    """An agent from its spec. ``config``: the config's ``[agent]`` table; ``flags``: base_url (openai,
    anthropic), host (ollama), formats, ... (None = not given). ``plugin:module:factory`` calls factory()."""
    kind, _, rest = spec.partition(":")
    if kind in ("openai", "ollama", "anthropic"):
        if not rest:
            raise AgentError(f"name the model: {kind}:MODEL (e.g. {kind}:qwen2.5-coder:7b)")
        from .llm import make_llm_agent

        return make_llm_agent(kind, rest, config=config, **flags)
    if kind == "search":
        from .search import SearchAgent

        return SearchAgent(sampler=rest or "tpe")
    if kind == "plugin":
        module_name, _, attr = rest.partition(":")
        if not module_name or not attr:
            raise AgentError(f"plugin agents are given as plugin:package.module:factory, not {spec!r}")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise AgentError(f"cannot load the agent {spec!r}: {e}") from e
        return factory()
    raise AgentError(
        f"unknown agent {spec!r}. Agents: ollama:MODEL, openai:MODEL (with --llm-url for a local server), anthropic:MODEL, "
        "search (Optuna TPE over the knobs, no LLM), search:random, plugin:package.module:factory."
    )
