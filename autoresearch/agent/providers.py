"""Chat providers: Ollama (default, local or remote) and any OpenAI-compatible endpoint.

A provider turns messages into the model's reply text. Unreachable servers, timeouts, 429 and 5xx are
retried with backoff and then raised as ``AgentUnavailable`` (the loop waits; it does not spend an
experiment). Keys come only from the environment or the config and are never logged.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

import httpx

from .base import AgentError, AgentUnavailable

Message = dict[str, str]


class Provider(Protocol):
    name: str

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None) -> str: ...

    def release(self) -> None:
        """Free the model's memory before training (unified memory, one GPU)."""
        ...


def _retrying(call, *, attempts: int, backoff: float, what: str):  # type: ignore[no-untyped-def]
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return call()
        except AgentUnavailable as e:
            last = e
            if attempt + 1 < attempts:
                time.sleep(backoff * 2**attempt)
    raise AgentUnavailable(f"{what}: {last}") from last


def estimate_tokens(messages: list[Message]) -> int:
    return sum(len(m["content"]) for m in messages) // 3 + 16


class OpenAIProvider:
    """POST {base_url}/chat/completions (LM Studio, vLLM, llama.cpp server, hosted APIs)."""

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 600.0,
                 attempts: int = 3, backoff: float = 2.0, max_tokens: int = 4096, temperature: float = 0.7) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.max_tokens, self.temperature = max_tokens, temperature

    def _once(self, body: dict[str, Any]) -> str:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            r = httpx.post(f"{self.base_url}/chat/completions", json=body, headers=headers,
                           timeout=httpx.Timeout(self.timeout, connect=10.0))
        except (httpx.TimeoutException, httpx.TransportError) as e:
            raise AgentUnavailable(f"{self.base_url} unreachable ({type(e).__name__})") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise AgentUnavailable(f"{self.base_url} answered HTTP {r.status_code}")
        if r.status_code >= 400:
            raise AgentError(f"{self.base_url} refused the request: HTTP {r.status_code} {r.text[:300]}")
        try:
            return str(r.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentError(f"{self.base_url} sent a reply that is not a chat completion: {r.text[:300]}") from None

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                                "temperature": self.temperature}
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "change", "schema": schema}}
        return _retrying(lambda: self._once(body), attempts=self.attempts, backoff=self.backoff, what=self.name)

    def release(self) -> None:
        pass


class OllamaProvider:
    """The official ollama client; num_ctx set from the prompt size (Ollama's default silently truncates)."""

    def __init__(self, model: str, host: str | None = None, *, timeout: float = 900.0, attempts: int = 3,
                 backoff: float = 2.0, keep_alive: str | int = "5m", max_ctx: int = 32768) -> None:
        import ollama

        self.model = model
        self.name = f"ollama:{model}"
        self.host = host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self._client = ollama.Client(host=self.host, timeout=timeout)
        self.attempts, self.backoff, self.keep_alive, self.max_ctx = attempts, backoff, keep_alive, max_ctx

    def _once(self, messages: list[Message], schema: dict[str, Any] | None) -> str:
        import ollama

        num_ctx = min(self.max_ctx, max(4096, 1 << (estimate_tokens(messages) + 2048).bit_length()))
        try:
            reply = self._client.chat(model=self.model, messages=messages, format=schema,
                                      options={"num_ctx": num_ctx}, keep_alive=self.keep_alive)
        except ConnectionError as e:
            raise AgentUnavailable(f"no Ollama server at {self.host}") from e
        except ollama.ResponseError as e:
            if e.status_code == 404:
                raise AgentError(f"Ollama at {self.host} has no model {self.model}: `ollama pull {self.model}`") from None
            if e.status_code == 429 or e.status_code >= 500:
                raise AgentUnavailable(f"Ollama answered HTTP {e.status_code}: {e.error}") from None
            raise AgentError(f"Ollama refused the request: {e.error}") from None
        except httpx.TimeoutException:
            raise AgentUnavailable(f"Ollama at {self.host} timed out") from None
        return str(reply.message.content or "")

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None) -> str:
        return _retrying(lambda: self._once(messages, schema), attempts=self.attempts, backoff=self.backoff, what=self.name)

    def release(self) -> None:
        try:
            self._client.generate(model=self.model, prompt="", keep_alive=0)
        except Exception:
            pass  # best effort: the model may already be unloaded or the server gone
