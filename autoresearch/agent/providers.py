"""Chat providers: how a list of messages becomes the model's reply text.

``openai:MODEL`` here (any OpenAI-compatible endpoint); ``ollama:MODEL`` in ollama.py; ``anthropic:MODEL`` in
anthropic.py. Replies are streamed: a slow local model is judged by the gap between tokens (``read_timeout``),
not by the length of its answer, and the caller sees progress (``on_text``). Unreachable servers, timeouts,
429 and 5xx are retried with backoff and then raised as ``AgentUnavailable`` (the loop waits; it does not
spend an experiment). Keys come only from the environment or the config and are never logged.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Protocol

import httpx

from .base import AgentError, AgentUnavailable, ContextTooSmall

Message = dict[str, str]
OnText = Callable[[str], None]  # called with each piece of the reply as it arrives


class Provider(Protocol):
    name: str
    model: str

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
             on_text: OnText | None = None) -> str: ...

    def release(self) -> str:
        """Free the model's memory before training (unified memory, one GPU): '' when it is free (or nothing was
        held), else why the model still holds memory."""
        ...


def retrying(call: Callable[[], str], *, attempts: int, backoff: float, what: str) -> str:
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


class Deadline:
    """A whole reply must arrive within ``seconds``: a model that loops forever is cut off, not waited for."""

    def __init__(self, seconds: float, what: str) -> None:
        self.end, self.seconds, self.what = time.monotonic() + seconds, seconds, what

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AgentError(f"{self.what} was still writing its reply after {self.seconds:.0f}s; "
                             "use a faster model or raise [agent] reply_seconds in the config")


def sse_data(lines: Iterator[str], deadline: "Deadline | None" = None) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream, up to ``[DONE]`` (keep-alive lines count for the deadline)."""
    for line in lines:
        if deadline is not None:
            deadline.check()
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield data


class FormatRejected(AgentError):
    """The server does not support the structured-output request it was sent (try the next kind)."""


def redact(text: str, *secrets: str) -> str:
    """Text for messages and the ledger: keys and URL credentials replaced (a proxy may echo them)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(https?://)[^/\s:@]+(:[^/\s@]*)?@", r"\1***@", text)


# how servers say a prompt is longer than their context (llama.cpp, llama-cpp-python, vLLM, OpenAI, LM Studio)
_CONTEXT_WORDS = re.compile(r"context (size|length|window)|n_ctx|exceed\w* the (available )?context|maximum context|"
                            r"too many tokens|prompt is too long|context_length_exceeded", re.I)
_WINDOW_SAID = re.compile(r"context (?:size|window|length)\D{0,20}?(\d{3,7})|\"?n_ctx\"?\s*[:=]\s*(\d{3,7})", re.I)
CONTEXT_FIX = ("start the server with a larger context (llama.cpp: -c 8192; llama-cpp-python: --n_ctx 8192; Ollama: "
               "[agent] max_ctx), use a model with a larger window, or set [agent] context_window to the server's "
               "size so prompts are fitted to it")


def context_refusal(where: str, text: str) -> ContextTooSmall | None:
    """A server's own words that the prompt did not fit, as the error that stops the run (None: another error)."""
    if not _CONTEXT_WORDS.search(text):
        return None
    named = _WINDOW_SAID.search(text)  # llama.cpp: "... context size (4096 tokens)", llama-cpp-python: "... of 2048"
    return ContextTooSmall(f"{where} refused the prompt as longer than its context window ({text[:200]}): {CONTEXT_FIX}",
                           window=int(named.group(1) or named.group(2)) if named else None)


def http_failure(url: str, r: httpx.Response, *, structured: bool = False, secrets: tuple[str, ...] = ()) -> AgentError:
    """The exception for an HTTP error status (read body): 429/5xx are worth waiting for, other 4xx are not."""
    url, text = redact(url, *secrets), redact(r.text[:300], *secrets)
    too_long = context_refusal(url, text) if r.status_code in (400, 413, 422, 500) else None
    if too_long is not None:
        return too_long
    if structured and r.status_code in (400, 422, 500) and ("response_format" in r.text or "json_schema" in r.text):
        # a refusal of the request's shape (llama-cpp-python answers it with a 500), not an outage
        return FormatRejected(f"{url} does not take this structured output: HTTP {r.status_code} {text}")
    if r.status_code == 429 or r.status_code >= 500:
        return AgentUnavailable(f"{url} answered HTTP {r.status_code} {text}".rstrip())
    return AgentError(f"{url} refused the request: HTTP {r.status_code} {text}".rstrip())


def collect(pieces: Iterable[str], on_text: OnText | None) -> str:
    """The whole reply from its streamed pieces, each handed to ``on_text`` as it arrives."""
    parts: list[str] = []
    for piece in pieces:
        if piece:
            parts.append(piece)
            if on_text:
                on_text(piece)
    return "".join(parts)


@contextmanager
def post_stream(base_url: str, path: str, body: dict[str, Any], headers: dict[str, str], *, read_timeout: float,
                secrets: tuple[str, ...] = (), structured: bool = False) -> Iterator[httpx.Response]:
    """POST ``base_url + path`` and hold the response open for streaming. An error status raises
    ``http_failure``'s exception; a refused, dropped or silent connection (also mid-stream) is unavailability."""
    try:
        with httpx.stream("POST", base_url + path, json=body, headers=headers,
                          timeout=httpx.Timeout(read_timeout, connect=10.0)) as r:
            if r.status_code >= 400:
                r.read()
                raise http_failure(base_url, r, structured=structured, secrets=secrets)
            yield r
    except (httpx.TimeoutException, httpx.TransportError) as e:
        raise AgentUnavailable(f"{redact(base_url)} unreachable or silent ({type(e).__name__})") from None


# Structured output, best first: OpenAI's json_schema; llama.cpp / LM Studio style json_object with a schema;
# plain JSON mode; nothing (the format's prompt still asks for the JSON). A server that rejects one gets the next.
RESPONSE_FORMATS = ("json_schema", "json_object_schema", "json_object", "none")


def response_format(mode: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "change", "schema": schema}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _props_ctx(data: Any) -> int:
    """llama.cpp server's GET /props: {"default_generation_settings": {"n_ctx": ...}, ...} (or n_ctx at the top)."""
    if not isinstance(data, dict):
        return 0
    settings = data.get("default_generation_settings") or {}
    value = settings.get("n_ctx") if isinstance(settings, dict) else None
    value = value if isinstance(value, int) else data.get("n_ctx")
    return int(value) if isinstance(value, int) and value > 0 else 0


class OpenAIProvider:
    """POST {base_url}/chat/completions, streamed (LM Studio, vLLM, llama.cpp server, hosted APIs)."""

    def __init__(self, model: str, base_url: str | None = None, *, api_key: str | None = None,
                 read_timeout: float = 300.0, reply_seconds: float = 1800.0, attempts: int = 3, backoff: float = 2.0,
                 max_tokens: int = 4096, temperature: float = 0.7, stream: bool = True) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.read_timeout, self.reply_seconds, self.attempts, self.backoff = read_timeout, reply_seconds, attempts, backoff
        self.max_tokens, self.temperature, self.stream = max_tokens, temperature, stream
        self._format_mode = 0  # index into RESPONSE_FORMATS: the first this server accepted
        self._window: int | None = None  # the server's context (0: it does not say), asked once

    def problem(self) -> str | None:
        """What stops this provider from working at all (checked when a run starts)."""
        if not self._key and "api.openai.com" in self.base_url:
            return ("openai: set OPENAI_API_KEY for api.openai.com, or give --llm-url for a local OpenAI-compatible "
                    "server (llama.cpp, LM Studio, vLLM)")
        return None

    def context_window(self) -> int | None:
        """The server's context in tokens where it says it: llama.cpp's /props, or the model list's entry (vLLM
        max_model_len, LM Studio / OpenRouter context_length); None when it does not say (asked once)."""
        if self._window is not None:
            return self._window or None
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        found = 0
        for url, pick in ((root + "/props", _props_ctx), (self.base_url + "/models", self._listed_ctx)):
            try:
                r = httpx.get(url, headers=headers, timeout=httpx.Timeout(5.0, connect=3.0))
                found = pick(r.json()) if r.status_code == 200 else 0
            except (httpx.HTTPError, ValueError):
                found = 0
            if found:
                break
        self._window = found
        return found or None

    def _listed_ctx(self, data: Any) -> int:
        models = [m for m in (data.get("data") or []) if isinstance(m, dict)] if isinstance(data, dict) else []
        mine = [m for m in models if m.get("id") == self.model] or (models if len(models) == 1 else [])
        for m in mine:
            for key in ("max_model_len", "context_length", "max_context_length", "n_ctx"):
                if isinstance(m.get(key), int) and m[key] > 0:
                    return int(m[key])
        return 0

    def _once(self, body: dict[str, Any], on_text: OnText | None) -> str:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        deadline = Deadline(self.reply_seconds, self.name)
        with post_stream(self.base_url, "/chat/completions", body, headers, read_timeout=self.read_timeout,
                         secrets=(self._key,), structured="response_format" in body) as r:
            if "text/event-stream" not in r.headers.get("content-type", ""):
                r.read()
                return self._whole(r)
            text = collect((self._delta(data) for data in sse_data(r.iter_lines(), deadline)), on_text)
        if text or not body.get("stream"):
            return text
        # a stream that ended with nothing: llama-cpp-python fails inside an HTTP 200 stream and says nothing (e.g. a
        # prompt longer than its context). Asked once without streaming, it answers with the error itself.
        with post_stream(self.base_url, "/chat/completions", dict(body, stream=False), headers,
                         read_timeout=self.read_timeout, secrets=(self._key,), structured="response_format" in body) as r:
            r.read()
            return self._whole(r)

    def _whole(self, r: httpx.Response) -> str:
        try:
            return str(r.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentError(f"{redact(self.base_url)} sent a reply that is not a chat completion: {redact(r.text[:300], self._key)}") from None

    def _delta(self, data: str) -> str:
        try:
            chunk = json.loads(data)
            if "error" in chunk:  # llama.cpp answers HTTP 200, then says inside the stream that the prompt is too long
                said = str(chunk["error"])[:300]
                raise context_refusal(redact(self.base_url), said) or AgentUnavailable(
                    f"{redact(self.base_url)} failed mid-reply: {said}")
            choices = chunk.get("choices") or []
            return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""
        except (ValueError, AttributeError, TypeError):
            raise AgentError(f"{redact(self.base_url)} sent a malformed stream chunk: {data[:200]}") from None

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
             on_text: OnText | None = None) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                                "temperature": self.temperature, "stream": self.stream}
        while True:
            fmt = response_format(RESPONSE_FORMATS[self._format_mode], schema) if schema is not None else None
            if fmt is None:
                body.pop("response_format", None)
            else:
                body["response_format"] = fmt
            try:
                return retrying(lambda: self._once(body, on_text), attempts=self.attempts, backoff=self.backoff,
                                what=self.name)
            except FormatRejected:
                if fmt is None:
                    raise
                self._format_mode += 1  # this server does not take that kind of structured output: the next

    def release(self) -> str:
        return ""
