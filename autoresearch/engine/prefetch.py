"""Proposing while training (issue 15): the next proposal is asked for in a thread while an experiment trains.

The engine starts a :class:`Prepared` right before an experiment's first training, with the history as it
stands (the running experiment listed as running) and the best script. When the experiment is decided the
engine takes the prepared proposal: as it is when the best did not change, rebased onto the new best when it
did (the change re-applied line by line, :func:`autoresearch.engine.merge.apply_change`), or not at all when
it no longer applies or the agent failed (then the agent is asked again, as without pipelining). Either way it
goes through the same integrity and duplicate checks as any proposal.

Only for an agent that does not compete with the training for the machine (a remote API: see
``Agent.works_alongside_training``) unless asked for (``--propose-ahead on``). The thread only calls the agent;
a stop does not wait for it (a daemon thread: its reply is dropped).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..agent.base import Agent, AgentContext, Proposal
from .merge import apply_change

MODES = ("auto", "on", "off")


class Prepared:
    """One proposal asked for ahead of time, and what it was based on."""

    def __init__(self, agent: Agent, ctx: AgentContext, base_commit: str) -> None:
        self.base_commit = base_commit
        self.base_script = ctx.script
        self.proposal: Proposal | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._thread = threading.Thread(target=self._work, args=(agent, ctx), name="autoresearch-propose-ahead",
                                        daemon=True)
        self._thread.start()

    def _work(self, agent: Agent, ctx: AgentContext) -> None:
        try:
            self.proposal = agent.propose(ctx)
        except BaseException as e:  # noqa: BLE001 - said by the engine when it takes the proposal
            self.error = e
        finally:
            self.finished = time.monotonic()

    @property
    def ready(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, keep_waiting: Callable[[], bool], poll: float = 0.5) -> bool:
        """Wait for the reply while ``keep_waiting()``; True when it came."""
        while self._thread.is_alive():
            if not keep_waiting():
                return False
            self._thread.join(poll)
        return True

    def seconds(self) -> float:
        """How long the agent worked on it (so far)."""
        return (self.finished or time.monotonic()) - self.started

    def for_best(self, best_commit: str, best_script: str) -> tuple[Proposal | None, str]:
        """(the proposal for the best as it now is, '') or (None, why it cannot be used)."""
        if self.error is not None or self.proposal is None:
            return None, f"the agent failed while the last experiment trained ({type(self.error).__name__}: {self.error})"
        if best_commit == self.base_commit:
            return self.proposal, ""
        rebased = apply_change(best_script, self.base_script, self.proposal.source)
        if rebased is None:
            return None, "it no longer applies to the new best"
        return Proposal(self.proposal.description, rebased, dict(self.proposal.meta or {}, rebased_from=self.base_commit)), ""
