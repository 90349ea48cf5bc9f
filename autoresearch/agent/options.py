"""Per-model agent settings: built-in defaults by model size, then the config's ``[agent]`` table, then
``[agent.models."PATTERN"]`` tables whose shell pattern matches the model name (later ones win), then flags.

    [agent]
    default = "ollama:qwen2.5-coder:7b"   # the researcher when --agent is not given (else: chosen, see choice.py)
    formats = ["search_replace", "whole_file", "knobs"]   # the edit formats to try, in order
    max_tokens = 4096
    unload_before_training = "auto"    # true | false | "auto" (on Apple unified memory and CUDA machines)
    context_window = 8192              # tokens, when the server does not say (llama.cpp /props, Ollama /api/show do)
    prompts = "~/my-prompts"           # edited prompts (`autoresearch init-prompts DIR` copies the shipped ones)
    [agent.models."qwen2.5-coder:1.5b*"]
    formats = ["knobs", "search_replace"]
    max_tokens = 1024
    [agent.openai]                     # per provider: where and with which key (environment variables also work)
    base_url = "http://127.0.0.1:8080/v1"
    [agent.anthropic]
    api_key = "..."
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from .base import AgentError

FORMATS = ("search_replace", "whole_file", "knobs")
KEYS = {"formats": list, "max_tokens": int, "temperature": (int, float), "reply_seconds": (int, float),
        "read_timeout": (int, float), "attempts_per_format": int, "unload_before_training": (bool, str),
        "keep_alive": (str, int), "max_ctx": int, "prompts": str, "context_window": int,
        "default": str}  # default: the researcher `run` uses without --agent (agent/choice.py)
PROVIDERS = ("openai", "anthropic", "ollama")  # [agent.openai] etc.: base_url and api_key for that provider only
PROVIDER_KEYS = {"base_url": str, "api_key": str}
_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", re.I)


def model_size_billions(model: str) -> float | None:
    """Parameters in billions as the name says (``qwen2.5-coder:7b`` -> 7, ``gemma3:270m`` -> 0.27)."""
    sizes = [float(n) / (1000 if unit.lower() == "m" else 1) for n, unit in _SIZE.findall(model.rsplit("/", 1)[-1])]
    return max(sizes) if sizes else None  # "qwen2.5:7b-instruct-1m" is 7B (1m is its context)


def builtin(model: str) -> dict[str, Any]:
    """Small models rarely copy SEARCH lines exactly: they start with the schema-constrained knobs format."""
    size = model_size_billions(model)
    if size is not None and size < 3:
        return {"formats": ["knobs", "search_replace"], "max_tokens": 1024}
    return {"formats": list(FORMATS)}


def _types(spec: Any) -> tuple[type, ...]:
    return spec if isinstance(spec, tuple) else (spec,)


def provider_settings(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """``[agent.KIND]``: the base URL and key of one provider (a key never goes to another provider's server)."""
    table = dict((config or {}).get(kind) or {})
    for key, value in table.items():
        if key not in PROVIDER_KEYS or not isinstance(value, PROVIDER_KEYS[key]):
            raise AgentError(f"[agent.{kind}] in the config: settings are base_url and api_key (strings), not {key!r}")
    return table


def _check(where: str, table: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key == "models" or key in PROVIDERS:
            continue
        if key not in KEYS:
            raise AgentError(f"{where}: unknown setting {key!r}; settings: {', '.join(KEYS)}")
        if not isinstance(value, KEYS[key]) or isinstance(value, bool) and bool not in _types(KEYS[key]):
            raise AgentError(f"{where}: {key} has the wrong type ({value!r})")
        out[key] = value
    formats = out.get("formats")
    if formats is not None:
        bad = [f for f in formats if f not in FORMATS]
        if bad or not formats:
            raise AgentError(f"{where}: formats must be a non-empty list of {', '.join(FORMATS)}; got {formats!r}")
    return out


def resolve(model: str, config: dict[str, Any] | None = None, **flags: Any) -> dict[str, Any]:
    """The settings for ``model``: built-in, then config, then matching model tables, then non-None flags."""
    config = config or {}
    merged = builtin(model)
    merged.update(_check("[agent] in the config", config))
    for pattern, table in (config.get("models") or {}).items():
        if fnmatch.fnmatch(model, pattern):
            merged.update(_check(f'[agent.models."{pattern}"] in the config', table))
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged
