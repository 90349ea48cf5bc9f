"""The dashboard's status lines: what the engine is doing, how the night goes, how busy the machine is."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from ...engine.events import PURPOSE_WORDS
from ...engine.sysload import Load
from ...engine.view import RunState, format_age

PHASE_WORDS = {
    "starting": "starting",
    "proposing": "agent proposing",
    "repairing": "agent repairing",
    "waiting_for_agent": "waiting for the LLM",
    "training": "training",
    "evaluating": "evaluating",
    "paused": "paused",
    "waiting_for_disk": "paused: disk full",
    "waiting_for_quiet": "waiting for a quiet machine",
    "stopped": "stopped",
    "reverting": "reverting a kept change",
    "retesting": "re-testing",
}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def phase_text(state: RunState, now: float, remaining: float | None, compact: bool = False) -> Text:
    """'● training exp 12 (seed 1)  01:12 / 05:00' and friends (``compact``: for a narrow terminal)."""
    text = Text()
    if state.error:
        return text.append("unreadable run", style="bold red")
    if not state.engine.alive:
        since = state.engine.dead_since
        clean = state.engine.stopped_cleanly
        text.append("■ stopped" if clean else "■ engine not running", style="bold" if clean else "bold red")
        if since:
            text.append(f" {'at' if clean else 'since'} {time.strftime('%H:%M', time.localtime(since))}",
                        style="" if clean else "red")
        return text
    word = PHASE_WORDS.get(state.phase, state.phase)
    style = {"training": "bold green", "evaluating": "bold green", "paused": "bold yellow",
             "waiting_for_agent": "bold yellow", "waiting_for_disk": "bold red", "waiting_for_quiet": "bold yellow"}.get(state.phase, "bold cyan")
    text.append(f"● {word}", style=style)
    cur = state.current
    if state.phase in ("training", "evaluating") and cur is not None:
        text.append(f" exp {cur.index}", style="bold")
        extra = PURPOSE_WORDS.get(cur.purpose, "")
        if compact:
            extra = {"confirm": "confirming", "repair": "fix"}.get(cur.purpose, extra)
        seed = f"seed {cur.seed}" if cur.seed is not None else ""
        text.append(f" ({', '.join(x for x in (extra, seed) if x)})" if extra or seed else "")
        budget = cur.budget_seconds
        if state.phase == "training" and budget:
            done = budget - remaining if remaining is not None else None
            text.append(f"  {_clock(done)} / {_clock(budget)}")
            if cur.progress.get("tokens_per_second") and not compact:
                text.append(f"  {cur.progress['tokens_per_second']:,.0f} tok/s", style="dim")
        elif state.phase == "evaluating":
            text.append("  scoring val_bpb", style="dim")
    elif state.phase in ("proposing", "repairing") and state.agent.reply:
        reply = state.agent.reply
        if reply.get("state") == "writing":
            text.append(f"  {reply.get('chars', 0):,} characters, {reply.get('seconds', 0):.0f}s", style="dim")
        elif reply.get("since"):
            text.append(f"  reading the prompt {now - float(reply['since']):.0f}s", style="dim")
    elif state.phase == "waiting_for_agent" and state.phase_detail:
        text.append(f"  {state.phase_detail[:80]}", style="dim")
    if state.paused and state.phase != "paused":
        text.append("  (pausing after this experiment)", style="yellow")
    return text


def night_text(state: RunState, now: float, compact: bool = False) -> Text:
    """'best 2.1234 (-0.0321 vs baseline) · σ 0.0016 · 9.8 exp/h · 41 experiments' (shorter when ``compact``)."""
    sep = " · " if compact else "  ·  "
    text = Text()
    best = state.best
    if best is not None and best.val_bpb is not None:
        text.append("best ", style="dim").append(f"{best.val_bpb:.6f}", style="bold")
        if state.gain is not None and best.kind != "baseline":
            gain = f" ({state.gain:+.6f})" if compact else f" ({state.gain:+.6f} vs baseline)"
            text.append(gain, style="green" if state.gain < 0 else "red")
        text.append(f" #{best.index}", style="dim")
    else:
        text.append("no result yet", style="dim")
    if state.noise_sigma is not None:
        text.append(f"{sep}σ ", style="dim").append(f"{state.noise_sigma:.4f}")
    rate = state.experiments_per_hour(now)
    if rate is not None:
        text.append(sep, style="dim").append(f"{rate:.1f}").append("/h" if compact else " exp/h", style="dim")
    noun = "exp" if compact else ("experiment" if state.experiments == 1 else "experiments")
    text.append(sep, style="dim").append(f"{state.experiments}").append(f" {noun}", style="dim")
    keeps = state.counts.get("keep", 0)
    if keeps:
        text.append(f" ({keeps} kept)", style="dim")
    return text


def load_text(load: Load | None) -> Text:
    text = Text()
    if load is None:
        return text
    text.append("CPU ", style="dim").append(f"{load.cpu_percent:3.0f}%")
    text.append("  mem ", style="dim").append(f"{load.memory_used_gb:.1f}/{load.memory_total_gb:.0f} GB")
    for gpu in load.gpus:
        text.append("  GPU ", style="dim")
        text.append(f"{gpu.utilization:.0f}%" if gpu.utilization is not None else "?")
        if gpu.memory_used_gb is not None and gpu.memory_total_gb:
            text.append(f" {gpu.memory_used_gb:.0f}/{gpu.memory_total_gb:.0f} GB")
    return text


class StatusBar(Static):
    """Two lines: the phase (left) and the machine's load (right); the night's figures below."""

    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._state: RunState | None = None
        self._load: Load | None = None
        self._remaining: float | None = None
        self._at = 0.0  # the app's clock at the last update (the clocks tick between polls)
        self._now = 0.0

    def show(self, state: RunState, load: Load | None, now: float, remaining: float | None) -> None:
        self._state, self._load, self._now, self._remaining = state, load, now, remaining
        self._at = self._clock()
        self._render_now()

    def _clock(self) -> float:
        return float(getattr(self.app, "clock", time.time)())

    def tick(self) -> None:
        """Advance the clocks between polls (called once a second)."""
        if self._state is not None:
            self._render_now()

    def _render_now(self) -> None:
        state = self._state
        if state is None:
            return
        elapsed = max(0.0, self._clock() - self._at)
        now = self._now + elapsed
        remaining = self._remaining - elapsed if self._remaining is not None and state.phase == "training" else self._remaining
        width = max(20, self.size.width - 2)
        compact = width < 110
        first = phase_text(state, now, remaining, compact)
        load = load_text(self._load)
        gap = width - first.cell_len - load.cell_len
        line = first + Text(" " * max(1, gap)) + load if gap >= 1 else first
        second = night_text(state, now, compact)
        if not state.engine.alive and state.engine.dead_since:
            second.append(f"  ·  last activity {format_age(now - state.engine.dead_since)} ago", style="dim")
        self.update(Text("\n").join([line, second]))
