"""What an agent is, as the engine sees it: given the context, propose a new train.py with a description.

The engine calls :class:`Agent`'s methods: ``propose``, and after a rejected or crashed proposal ``repair``;
``release`` before a training, ``prompt_files`` to keep a copy of the prompts, ``set_reply_listener`` for a
heartbeat while a model writes. Agents are built by :func:`autoresearch.agent.factory.load_agent`. An agent that cannot reach its model raises ``AgentUnavailable``
(the loop waits and retries, it does not burn experiments); any other failure raises ``AgentError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class AgentError(Exception):
    """The agent failed to produce a usable proposal (malformed reply, no valid edit after retries)."""


class AgentUnavailable(AgentError):
    """The agent's model cannot be reached right now (server down, timeouts, rate limits)."""


class ContextTooSmall(AgentError):
    """Even the smallest prompt does not fit the model's context window (or the server said the prompt is too
    long): no reply can ever be usable, so the run stops at once with the sizes and the fix."""

    def __init__(self, message: str, window: int | None = None) -> None:
        super().__init__(message)
        self.window = window  # the window the server named in its refusal, when it did


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
    notes: list[str] = field(default_factory=list)  # the user's steering notes in force, oldest first


class Agent:
    """The agent as the engine sees it. Subclass it and implement :meth:`propose` (and :meth:`repair` when the
    agent can fix a proposal); the other methods have defaults for agents that hold no model and stream nothing.
    """

    name: str = "agent"
    reads_notes: bool = True  # False: the user's steering notes do not reach it (the run says so)

    def propose(self, ctx: AgentContext) -> Proposal:
        """A new train.py with a one-line description. Raises AgentUnavailable / AgentError."""
        raise NotImplementedError

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        """A fixed proposal after ``feedback`` (integrity violations, a crash's traceback), or None to give up."""
        return None

    def release(self, shared_memory: bool) -> str:
        """Free the model's memory before a training; ``shared_memory``: the LLM and the training share it
        (Apple unified memory, one GPU). '' when nothing is held any more, else why the model still holds memory.
        Default: nothing is held."""
        return ""

    def works_alongside_training(self, shared_memory: bool) -> bool:
        """Whether asking for the next proposal while a training runs takes nothing from the training (a model on
        another machine). Default: False (a local model would compete for the CPU, the GPU or the memory)."""
        return False

    def prompt_files(self) -> dict[str, str]:
        """The prompt files (name -> text) the proposals were written with; the run keeps a copy. Default: none."""
        return {}

    def set_reply_listener(self, listener: Callable[[str], None] | None) -> None:
        """``listener`` receives the model's reply as it streams (the engine's heartbeat). Default: no stream."""


class _Adapter(Agent):
    """A plugin's agent that does not subclass :class:`Agent`: its propose/repair, the defaults for the rest."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", type(inner).__name__))

    def propose(self, ctx: AgentContext) -> Proposal:
        return self.inner.propose(ctx)  # type: ignore[no-any-return]

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        repair = getattr(self.inner, "repair", None)
        return repair(ctx, proposal, feedback) if callable(repair) else None


def as_agent(obj: Any) -> Agent:
    """``obj`` as an :class:`Agent`: itself when it is one, else an adapter over its ``propose``."""
    if isinstance(obj, Agent):
        return obj
    if not callable(getattr(obj, "propose", None)):
        raise AgentError(f"{obj!r} is not an agent: it needs a propose(ctx) method (subclass autoresearch.agent.base.Agent)")
    return _Adapter(obj)
