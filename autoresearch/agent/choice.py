"""Which researcher a run gets when the user names none (``autoresearch run`` without ``--agent``, ``demo``).

The best one available, said with its reason: the config's choice (``[agent] default = "SPEC"``); else a known
coder model that Ollama has installed and that fits the machine's memory next to the training (the largest
such); else the search agent (Optuna over the knobs, no LLM), which needs nothing. ``--agent baseline`` asks
for no researcher at all (the baseline alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .options import model_size_billions
from .readiness import ServerModels, fits, ollama_models

BASELINE = "baseline"  # the spec for "no researcher": train the baseline and stop
# model families that write code well enough to edit a training script (Ollama library names)
CODER_FAMILIES = ("qwen2.5-coder", "qwen3-coder", "qwen3", "qwen2.5", "deepseek-coder-v2", "deepseek-coder",
                  "devstral", "codestral", "codellama", "codegemma", "starcoder2", "granite-code", "gpt-oss",
                  "llama3.1", "llama3.3", "mistral-small", "gemma3", "phi4")
MIN_BILLIONS = 1.5  # below this a model's edits are mostly noise (measured with gemma3:270m: no valid edit)
SUGGESTED = "qwen2.5-coder:7b"  # a good start on 16 GB


@dataclass(frozen=True)
class Choice:
    spec: str | None  # None: no researcher (the baseline alone)
    reason: str  # one line: why this one (and how to get a better one)


def _family(name: str) -> str | None:
    base = name.split("/")[-1].split(":")[0].lower()
    return next((f for f in CODER_FAMILIES if base == f or re.fullmatch(re.escape(f) + r"[-.\w]*", base)
                 and not base.startswith(f + "-embed")), None)


def _billions(name: str, size_bytes: int) -> float:
    said = model_size_billions(name)
    if said is not None:
        return said
    return size_bytes / 0.6e9 if size_bytes else 0.0  # ~4.5 bits per weight in Ollama's default quantisation


def suitable(models: list[tuple[str, int]], memory_gb: float | None) -> list[tuple[str, int]]:
    """The installed models that could research here, best (largest that fits) first."""
    ok = [(n, s) for n, s in models if _family(n) and _billions(n, s) >= MIN_BILLIONS and fits(s, memory_gb)]
    return sorted(ok, key=lambda m: (_billions(*m), m[1]), reverse=True)


def choose(configured: str | None, ollama_host: str, memory_gb: float | None,
           listing: ServerModels | None = None) -> Choice:
    """The researcher for a run that names none. ``listing``: what Ollama has (asked when not given)."""
    if configured:
        return Choice(None if configured == BASELINE else configured, f"the config's choice ([agent] default = \"{configured}\")")
    listing = listing if listing is not None else ollama_models(ollama_host)
    if listing.problem:
        return Choice("search", f"the search agent (no LLM): {_short(listing.problem)}; for an LLM researcher start "
                                f"Ollama and `ollama pull {SUGGESTED}`")
    best = suitable(listing.models, memory_gb)
    if best:
        name, size = best[0]
        room = f" (the largest coder model that fits in {memory_gb:.0f} GB next to the training)" if memory_gb else ""
        return Choice(f"ollama:{name}", f"ollama:{name} from Ollama at {ollama_host}{room}")
    have = ", ".join(n for n, _ in listing.models[:6]) or "no models"
    return Choice("search", f"the search agent (no LLM): Ollama at {ollama_host} has no suitable coder model ({have}); "
                            f"`ollama pull {SUGGESTED}` for an LLM researcher, or name one with --agent")


def _short(problem: str) -> str:
    return problem.split(";")[0]


def memory_for_llm(hardware: Any) -> float | None:
    """The memory an LLM shares with the training: the GPU's on CUDA, else the machine's (unified on Apple)."""
    return hardware.cuda.memory_gb if getattr(hardware, "cuda", None) else getattr(hardware, "ram_gb", None)
