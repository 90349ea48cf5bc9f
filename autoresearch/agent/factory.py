"""Building an agent from its spec (``--agent``, the run's config): the one place that knows every kind."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Agent, AgentError, as_agent


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
        return as_agent(factory())
    raise AgentError(
        f"unknown agent {spec!r}. Agents: ollama:MODEL, openai:MODEL (with --llm-url for a local server), anthropic:MODEL, "
        "search (Optuna TPE over the knobs, no LLM), search:random, search:cmaes, plugin:package.module:factory."
    )
