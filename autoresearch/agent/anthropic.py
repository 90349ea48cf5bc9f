"""``anthropic:MODEL``: Anthropic's Messages API, streamed, over plain HTTP (no SDK needed).

The key comes from ANTHROPIC_API_KEY (or the config) and is sent only in the ``x-api-key`` header. There is
no schema-constrained decoding here: the knobs format's prompt asks for the JSON and the edit parser checks it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

from .base import AgentError, AgentUnavailable
from .providers import Deadline, Message, OnText, collect, post_stream, retrying, sse_data

API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 read_timeout: float = 300.0, reply_seconds: float = 1800.0, attempts: int = 3, backoff: float = 2.0,
                 max_tokens: int = 4096, temperature: float = 0.7) -> None:
        self.model = model
        self.name = f"anthropic:{model}"
        self.base_url = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY", "")
        self.read_timeout, self.reply_seconds, self.attempts, self.backoff = read_timeout, reply_seconds, attempts, backoff
        self.max_tokens, self.temperature = max_tokens, temperature

    def problem(self) -> str | None:
        """What stops this provider from working at all (checked when a run starts)."""
        if not self._key:
            return "anthropic: set ANTHROPIC_API_KEY in the environment (or api_key under [agent.anthropic] in the config)"
        return None

    def _once(self, body: dict[str, Any], on_text: OnText | None) -> str:
        problem = self.problem()
        if problem:
            raise AgentError(problem)
        headers = {"x-api-key": self._key, "anthropic-version": API_VERSION}
        deadline = Deadline(self.reply_seconds, self.name)
        with post_stream(self.base_url, "/v1/messages", body, headers, read_timeout=self.read_timeout,
                         secrets=(self._key,)) as r:
            return collect(self._texts(sse_data(r.iter_lines(), deadline)), on_text)

    def _texts(self, events: Iterator[str]) -> Iterator[str]:
        """The text pieces of a Messages stream, up to its end."""
        for data in events:
            try:
                event = json.loads(data)
            except ValueError:
                raise AgentError(f"{self.base_url} sent a malformed stream event: {data[:200]}") from None
            kind = event.get("type")
            if kind == "error":
                raise AgentUnavailable(f"{self.base_url} failed mid-reply: {str(event.get('error'))[:300]}")
            if kind == "content_block_delta" and (event.get("delta") or {}).get("type") == "text_delta":
                yield str(event["delta"].get("text") or "")
            if kind == "message_stop":
                return

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
             on_text: OnText | None = None) -> str:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        body: dict[str, Any] = {"model": self.model, "messages": turns, "max_tokens": self.max_tokens,
                                "temperature": self.temperature, "stream": True}
        if system:
            body["system"] = system
        return retrying(lambda: self._once(body, on_text), attempts=self.attempts, backoff=self.backoff, what=self.name)

    def release(self) -> str:
        return ""
