"""The engine's signals: SIGINT/SIGTERM stop it (after the experiment, then now), a stop during the agent's reply
abandons the reply, SIGHUP is ignored headless."""

from __future__ import annotations

import signal
from typing import Any, Callable


class AgentInterrupted(BaseException):
    """A stop asked for while the agent was writing: raised into the main thread to abandon its reply (a
    BaseException, so the providers' error handling does not take it for a failed request)."""


def install_signal_handlers(engine: Any, *, headless: bool, log: Callable[[str], None]) -> None:
    """SIGINT/SIGTERM: stop after the current experiment; a second one stops now. SIGHUP ignored headless.
    ``engine``: a loop.Engine (not imported here: loop imports this module)."""
    count = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        count["n"] += 1
        name = signal.Signals(signum).name
        if engine._agent_busy:  # nothing trains yet: the proposal is abandoned and the engine stops
            log(f"{name}: stopping (the agent's reply is abandoned)")
            engine.request_stop(reason=f"{name}: stopped while the agent was writing")
            raise AgentInterrupted()
        if count["n"] == 1:
            log(f"{name}: stopping after the current experiment (send it again to stop now)")
            engine.request_stop(reason=f"{name}: stopped after the experiment")
        else:
            log(f"{name} again: stopping now")
            engine.request_stop(now=True, reason=f"{name}: stopped now")

    def wake(signum: int, frame: Any) -> None:  # sent by the engine's own control watcher (a stop from a client)
        if engine._agent_busy:
            raise AgentInterrupted()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "pthread_kill") and hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, wake)
        engine._interrupt_signal = signal.SIGUSR1
    if headless and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
