"""Is the researcher ready for a night? One check for the CLI (`autoresearch run`) and the app's setup screen.

An agent is ready when its model can be reached and has what it needs: an API key, a server that answers, an
installed Ollama model. What is missing comes back as a sentence that says how to fix it; an Ollama model that
is only missing can be pulled (the caller asks the user first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from .base import AgentUnavailable


@dataclass(frozen=True)
class Readiness:
    ok: bool
    problem: str = ""  # what is missing and how to fix it ('' when ok)
    pullable: bool = False  # only the Ollama model is missing: pulling it fixes it
    unreachable: bool = False  # the server does not answer (a resumed run may wait for it)


def check(agent: Any) -> Readiness:
    """Whether ``agent`` can work now (agents without a remote model always can)."""
    from .ollama import OllamaProvider

    provider = getattr(agent, "provider", None)
    problem = getattr(provider, "problem", lambda: None)()
    if problem:
        return Readiness(False, problem)
    if not isinstance(provider, OllamaProvider):
        return Readiness(True)
    try:
        if provider.has_model():
            return Readiness(True)
    except AgentUnavailable as e:
        return Readiness(False, f"{e}, or point OLLAMA_HOST or [llm] ollama_host in the config at a running server",
                         unreachable=True)
    return Readiness(False, f"Ollama at {provider.host} does not have {provider.model}: `ollama pull {provider.model}` "
                            "(or pull it here)", pullable=True)


@dataclass(frozen=True)
class ServerModels:
    """What a server says it has (the setup screen's "test connection")."""

    models: list[tuple[str, int]] = field(default_factory=list)  # (name, size in bytes; 0 when not said)
    problem: str = ""


def ollama_models(host: str) -> ServerModels:
    """The models installed on the Ollama server at ``host``."""
    from .ollama import OllamaProvider

    try:
        installed = OllamaProvider("probe", host, read_timeout=10.0).installed()
    except AgentUnavailable as e:
        return ServerModels(problem=f"{e}; install Ollama from https://ollama.com, or use the search agent (no LLM)")
    except Exception as e:  # a server that is not Ollama
        return ServerModels(problem=f"{host} did not answer as an Ollama server: {type(e).__name__}: {e}")
    return ServerModels(sorted(installed.items()))


def openai_models(base_url: str, api_key: str = "") -> ServerModels:
    """GET {base_url}/models of an OpenAI-compatible server (llama.cpp, LM Studio, vLLM, a hosted API)."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(url, headers=headers, timeout=httpx.Timeout(10.0, connect=5.0))
    except httpx.HTTPError as e:
        return ServerModels(problem=f"no server answers at {base_url} ({type(e).__name__}); start it, or check the URL "
                                    "(it usually ends in /v1)")
    if r.status_code in (401, 403):
        return ServerModels(problem=f"{base_url} refused the key (HTTP {r.status_code}): set OPENAI_API_KEY")
    if r.status_code != 200:
        return ServerModels(problem=f"{url} answered HTTP {r.status_code}: is it an OpenAI-compatible server?")
    try:
        data = r.json().get("data") or []
        return ServerModels([(str(m["id"]), 0) for m in data if isinstance(m, dict) and "id" in m])
    except (ValueError, AttributeError, TypeError):
        return ServerModels(problem=f"{url} did not send a model list")


def fits(size_bytes: int, memory_gb: float | None) -> bool:
    """Whether a model of ``size_bytes`` fits next to the training: its weights plus a working margin in half
    the machine's memory (the other half stays with the training; the engine unloads the model before each
    training on shared memory anyway)."""
    if not memory_gb or size_bytes <= 0:
        return True
    return size_bytes * 1.25 / 1024**3 <= memory_gb / 2
