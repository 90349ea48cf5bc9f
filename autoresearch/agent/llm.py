"""The LLM researcher: prompts from prompts/, a provider, edit formats with feedback and a fallback chain."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..backends.knobs import read_knobs
from ..netaddr import on_this_machine
from ..resources import prompt_names, prompts_dir
from .base import Agent, AgentContext, AgentError, AgentUnavailable, ContextTooSmall, Proposal
from .edits import EditError, apply_blocks, apply_knobs, knobs_schema, whole_file
from .options import FORMATS, provider_settings, resolve
from .providers import CONTEXT_FIX, Message, OnText, OpenAIProvider, Provider, estimate_tokens

PROMPTS = prompts_dir()
_DESC = re.compile(r"^\s*\**description\**\s*:\s*(.+)$", re.I | re.M)


def load_prompt(name: str, directory: Path = PROMPTS) -> str:
    path = directory / f"{name}.md"
    try:
        return path.read_text()
    except OSError as e:
        raise AgentError(f"the prompt {path} is missing ({e}): `autoresearch init-prompts {directory}` adds the "
                         "missing prompts (your edited ones are kept); for the shipped prompts, reinstall "
                         "autoresearch") from None


def prompt_digest(directory: Path = PROMPTS) -> str:
    """Which prompts a run used: sha256 over every prompt file."""
    h = hashlib.sha256()
    for p in sorted(directory.glob("*.md")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


MAX_REPLY_CHARS = 100_000  # train.py is ~16k characters; a whole-file answer with its description fits many times
SENT_BACK_CHARS = 20_000  # of a reply that could not be applied, what goes back to the model with the error


COMPACT_SCRIPT = ("(left out to fit the model's context window: change only the knobs, whose current values are "
                  "listed under Your answer)")


class _NoFit(Exception):
    def __init__(self, tokens: int) -> None:
        super().__init__(f"about {tokens} tokens")
        self.tokens = tokens


def _clip(reply: str) -> str:
    if len(reply) <= SENT_BACK_CHARS:
        return reply
    half = SENT_BACK_CHARS // 2
    return f"{reply[:half]}\n[... {len(reply) - 2 * half:,} characters left out ...]\n{reply[-half:]}"


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def notes_text(notes: list[str]) -> str:
    """The user's steering notes as a prompt section ('' when there are none)."""
    if not notes:
        return ""
    lines = "\n".join(f"- {n.strip()}" for n in notes)
    return ("## Notes from the person running this research (follow them; they override your own plans)\n"
            + lines)


def history_table(history: list[dict[str, Any]], limit: int = 40) -> str:
    if not history:
        return "No experiments yet."
    rows = ["| # | status | val_bpb | delta | description |", "|---|---|---|---|---|"]
    for h in history[-limit:]:
        rows.append(f"| {h['index']} | {h.get('status') or 'running'} | {_fmt(h.get('val_bpb'), '.6f')} | "
                    f"{_fmt(h.get('delta'), '+.6f')} | {(h.get('description') or '').replace('|', '/')[:160]} |")
    if len(history) > limit:
        rows.insert(0, f"(the last {limit} of {len(history)} experiments)")
    return "\n".join(rows)


def describe(reply: str) -> str:
    m = _DESC.search(reply)
    if m:
        return m.group(1).strip()[:200]
    for line in reply.splitlines():
        line = line.strip().strip("#*` ")
        if line and not line.startswith(("<<<<", "====", ">>>>", "```")):
            return line[:200]
    return ""


def knobs_listing(script: str) -> str:
    lines = []
    for name, knob in read_knobs(script).items():
        lines.append(f"{name} = {knob.value!r}" + (f"  # {knob.comment}" if knob.comment else ""))
    return "The knobs now:\n" + "\n".join(lines)


def make_llm_agent(kind: str, model: str, *, config: dict[str, Any] | None = None, **flags: Any) -> "LLMAgent":
    """An LLM agent for ``kind:model`` with its per-model settings (see options.py)."""
    opts = resolve(model, config, **{k: v for k, v in flags.items() if k not in ("host", "base_url")})
    where = provider_settings(kind, config)
    base_url, api_key = flags.get("base_url") or where.get("base_url"), where.get("api_key")
    common = {k: opts[k] for k in ("max_tokens", "temperature", "reply_seconds", "read_timeout") if k in opts}
    provider: Provider
    if kind == "openai":
        provider = OpenAIProvider(model, base_url, api_key=api_key, **common)
    elif kind == "anthropic":
        from .anthropic import AnthropicProvider

        provider = AnthropicProvider(model, base_url, api_key=api_key, **common)
    else:
        from .ollama import OllamaProvider

        extra = {k: opts[k] for k in ("keep_alive", "max_ctx") if k in opts}
        provider = OllamaProvider(model, where.get("base_url") or flags.get("host"), **common, **extra)
    return LLMAgent(provider, formats=tuple(opts["formats"]), attempts_per_format=int(opts.get("attempts_per_format", 2)),
                    unload=opts.get("unload_before_training", "auto"), prompts=prompts_from(opts.get("prompts")),
                    context_window=opts.get("context_window"))


def prompts_from(directory: str | Path | None) -> Path:
    """The prompts directory a user named (checked: every prompt the agent reads is there), else the shipped one."""
    if not directory:
        return PROMPTS
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise AgentError(f"the prompts directory {path} does not exist: `autoresearch init-prompts {path}` copies the "
                         "shipped prompts there for editing")
    missing = [name for name in prompt_names() if not (path / name).is_file()]
    if missing:
        raise AgentError(f"the prompts directory {path} lacks {', '.join(missing)}: `autoresearch init-prompts {path}` "
                         "adds the missing ones (it keeps the files you edited)")
    return path.resolve()


class LLMAgent(Agent):
    def __init__(self, provider: Provider, *, formats: tuple[str, ...] = FORMATS, attempts_per_format: int = 2,
                 prompts: Path = PROMPTS, unload: bool | str = "auto", context_window: int | None = None) -> None:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise AgentError(f"unknown edit format(s) {unknown}; formats: {', '.join(FORMATS)}")
        if unload not in (True, False, "auto"):
            raise AgentError(f"unload_before_training is true, false or \"auto\", not {unload!r}")
        self.provider = provider
        self.name = provider.name
        self.formats = formats
        self.attempts = attempts_per_format
        self.prompts = prompts
        self.unload = unload
        self.context_window = context_window  # the config's override; else the provider says (window())
        self.on_text: OnText | None = None  # the reply as it streams (set_reply_listener: the engine's heartbeat)

    # -- prompts ----------------------------------------------------------------------------------------
    def _user_prompt(self, ctx: AgentContext, fmt: str, history_limit: int = 40, compact: bool = False) -> str:
        last = ctx.last_outcome or {}
        last_text = "None yet." if not last else (
            f"Experiment {last.get('index')}: {last.get('status')}. {last.get('reason') or ''}".strip()
            + (f"\nEnd of its log:\n```\n{last['log_tail'][-1500:]}\n```" if last.get("log_tail") and last.get("status") not in ("keep", "discard") else ""))
        template = load_prompt("propose", self.prompts)
        notes = notes_text(ctx.notes)
        if "{notes}" not in template and ctx.notes:  # a user's own prompt without the slot: the notes still reach it
            template = template.replace("## Your answer", "{notes}\n\n## Your answer") if "## Your answer" in template \
                else template + "\n\n{notes}"
        return template.format(notes=notes, 
            hardware=ctx.hardware or "unknown", backend=ctx.backend, device=ctx.profile.get("device", "?"),
            time_budget=ctx.time_budget, seq_len=ctx.profile.get("seq_len", "?"), vocab_size=ctx.profile.get("vocab_size", "?"),
            best=_fmt(ctx.best_val_bpb, ".6f"), noise=_fmt(ctx.noise_sigma, ".6f"),
            history=history_table(ctx.history, history_limit) if history_limit else
            f"({len(ctx.history)} experiments so far; their table is left out to fit the model's context window)",
            last_outcome=last_text, script=COMPACT_SCRIPT if compact else ctx.script.rstrip(),
            format_instructions=self._format_instructions(fmt, ctx.script),
        )

    def _format_instructions(self, fmt: str, script: str) -> str:
        text = load_prompt(f"format_{fmt}", self.prompts)
        return text + "\n" + knobs_listing(script) if fmt == "knobs" else text

    def _apply(self, fmt: str, script: str, reply: str) -> Proposal:
        if fmt == "knobs":
            source, description = apply_knobs(script, reply)
        elif fmt == "whole_file":
            source, description = whole_file(reply), describe(reply)
        else:
            source, description = apply_blocks(script, reply), describe(reply)
        if not description:
            raise EditError("Start your answer with one line `Description: <what you change and why>`.")
        if source == script:
            raise EditError("The proposal does not change train.py.")
        return Proposal(description, source, {"agent": self.name, "format": fmt, "prompts": prompt_digest(self.prompts)})

    def _chat(self, messages: list[Message], schema: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        t0 = time.perf_counter()
        chars = 0

        def on_text(piece: str) -> None:
            nonlocal chars
            chars += len(piece)
            if self.on_text:
                self.on_text(piece)

        reply = self.provider.chat(messages, schema=schema, on_text=on_text)
        return reply, {"seconds": round(time.perf_counter() - t0, 2), "reply_chars": len(reply)}

    @staticmethod
    def _check_size(reply: str, script: str) -> None:
        """A reply far larger than any change of train.py (a model that loops, a server that ignores max_tokens) is
        refused before it is applied or sent back: it would become a prompt of megabytes."""
        limit = max(MAX_REPLY_CHARS, 3 * len(script))
        if len(reply) > limit:
            raise EditError(f"The reply was {len(reply):,} characters, more than {limit:,}: answer with only the "
                            "description and the change, nothing else.")

    def _converse(self, ctx: AgentContext, first_user: str, fmt: str, check: Callable[[Proposal], str] | None = None) -> Proposal:
        messages: list[Message] = [{"role": "system", "content": load_prompt("program", self.prompts)},
                                   {"role": "user", "content": first_user}]
        schema = knobs_schema(ctx.script) if fmt == "knobs" else None
        problem = ""
        seconds = 0.0
        for _ in range(self.attempts):
            reply, stats = self._chat(messages, schema)
            seconds += stats["seconds"]
            try:
                self._check_size(reply, ctx.script)
                proposal = self._apply(fmt, ctx.script, reply)
                proposal.meta.update(attempts=len(messages) // 2, seconds=round(seconds, 2), reply_chars=stats["reply_chars"])
                return proposal
            except EditError as e:
                problem = str(e)
            messages += [{"role": "assistant", "content": _clip(reply)},
                         {"role": "user", "content": f"That could not be applied: {problem}\nAnswer again."}]
        raise EditError(problem)

    def prompt_files(self) -> dict[str, str]:
        """The prompt files this agent uses (the engine keeps a copy per digest in the run directory)."""
        return {p.name: p.read_text() for p in sorted(self.prompts.glob("*.md"))}

    def set_reply_listener(self, listener: OnText | None) -> None:
        self.on_text = listener

    def release(self, shared_memory: bool = True) -> str:
        """Unload the model before training where the LLM and the training share memory (or as configured): '' when
        it is unloaded or need not be, else why it is still held."""
        if self.unload is True or (self.unload == "auto" and shared_memory):
            return self.provider.release() or ""
        return ""

    def works_alongside_training(self, shared_memory: bool) -> bool:
        """A model served from another machine (a hosted API, a server on the LAN): its replies cost this machine
        nothing. One on this machine (Ollama, llama.cpp on localhost) competes with the training."""
        url = getattr(self.provider, "base_url", None) or getattr(self.provider, "host", None) or ""
        return bool(url) and not on_this_machine(url)

    # -- fitting the prompt to the model's context window ------------------------------------------------
    def window(self) -> tuple[int | None, str]:
        """The context window in tokens and where it was learnt ('' when unknown: prompts go as they are)."""
        if self.context_window:
            return self.context_window, "[agent] context_window in the config, or the server's refusal"
        ask = getattr(self.provider, "context_window", None)
        said = ask() if callable(ask) else None
        return (said, f"{self.provider.name} says so") if said else (None, "")

    def _reply_tokens(self, fmt: str = "search_replace", script: str = "") -> int:
        """Room kept for the reply: a knobs change is a line of JSON, a whole file is the script again."""
        asked = int(getattr(self.provider, "max_tokens", None) or 2048)
        need = {"knobs": 512, "whole_file": len(script) // 3 + 512}.get(fmt, 2048)
        return min(asked, need)

    def _fitted(self, ctx: AgentContext, fmt: str, extra: str = "") -> str:
        """The user prompt for ``fmt``, shrunk until it fits the window: fewer history rows, then (knobs only)
        the knobs without the rest of the script. Raises _NoFit with the smallest size when nothing fits."""
        window, _ = self.window()
        program = load_prompt("program", self.prompts)
        smallest = 0
        for limit, compact in ((40, False), (12, False), (4, False), (0, False), (0, True)):
            if compact and fmt != "knobs":
                break  # the other formats quote or rewrite the script: it cannot be left out
            user = self._user_prompt(ctx, fmt, limit, compact) + extra
            need = estimate_tokens([{"role": "system", "content": program}, {"role": "user", "content": user}])
            smallest = need
            if window is None or need + self._reply_tokens(fmt, ctx.script) <= window:
                return user
        raise _NoFit(smallest)

    # -- Agent protocol ---------------------------------------------------------------------------------
    def propose(self, ctx: AgentContext) -> Proposal:
        try:
            return self._propose(ctx)
        except ContextTooSmall as e:  # the server named its window in the refusal: learn it, fit, ask once more
            if e.window and self.context_window is None:
                self.context_window = e.window
                return self._propose(ctx)
            raise

    def _propose(self, ctx: AgentContext) -> Proposal:
        problems, sizes = [], []
        for fmt in self.formats:
            try:
                return self._converse(ctx, self._fitted(ctx, fmt), fmt)
            except _NoFit as e:
                sizes.append(e.tokens)
                problems.append(f"{fmt}: the prompt does not fit the context window")
            except (AgentUnavailable, ContextTooSmall):
                raise  # the engine waits for the server / stops: another format would not help
            except (EditError, AgentError) as e:  # incl. a server refusing this format's request (a schema)
                problems.append(f"{fmt}: {e}")
        if sizes and len(sizes) == len(self.formats):
            window, where = self.window()
            raise ContextTooSmall(
                f"the model's context window is {window} tokens ({where}), but the smallest prompt needs about "
                f"{min(sizes)} tokens plus {self._reply_tokens('knobs')} for the reply"
                + ("" if "knobs" in self.formats else " (the knobs format, which can leave the script out, is not "
                   "among the formats tried)") + f": {CONTEXT_FIX}")
        raise AgentError("no usable proposal in any edit format: " + " | ".join(p[:200] for p in problems))

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        fmt = proposal.meta.get("format", self.formats[0])
        broken = AgentContext(**{**ctx.__dict__, "script": proposal.source})
        repair = "\n\n" + load_prompt("repair", self.prompts).format(
            description=proposal.description, feedback=feedback[-3000:], format_instructions="")
        try:
            return self._converse(broken, self._fitted(broken, fmt, repair), fmt)
        except (EditError, _NoFit):
            return None
