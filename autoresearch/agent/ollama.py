"""``ollama:MODEL``: a local or remote Ollama server through the official client.

It lists the installed models, pulls a missing one (with progress, after the caller asked the user), streams
replies, sets ``num_ctx`` from the prompt size (Ollama's default context silently truncates long prompts), and
can unload the model (``keep_alive=0``) before a training that needs the same memory.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import httpx

from ..progress import NullProgress, Progress
from .base import AgentError, AgentUnavailable
from .providers import Deadline, Message, OnText, collect, estimate_tokens, retrying


def full_name(model: str) -> str:
    """Ollama's canonical name: a model without a tag means ``:latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"


class OllamaProvider:
    def __init__(self, model: str, host: str | None = None, *, read_timeout: float = 600.0,
                 reply_seconds: float = 1800.0, attempts: int = 3, backoff: float = 2.0,
                 keep_alive: str | int = "5m", max_ctx: int = 32768, max_tokens: int | None = None,
                 temperature: float | None = None) -> None:
        import ollama

        self.model = model
        self.name = f"ollama:{model}"
        self.host = host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self._client = ollama.Client(host=self.host, timeout=httpx.Timeout(read_timeout, connect=10.0))
        self.reply_seconds, self.attempts, self.backoff = reply_seconds, attempts, backoff
        self.keep_alive, self.max_ctx, self.max_tokens, self.temperature = keep_alive, max_ctx, max_tokens, temperature
        self._window: int | None = None  # the model's context (0: not said), asked once

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run a client call, translating its failures into the agent's two kinds."""
        import ollama

        try:
            return fn()
        except ConnectionError as e:
            raise AgentUnavailable(f"no Ollama server answers at {self.host} (start it with `ollama serve`)") from e
        except ollama.ResponseError as e:
            if e.status_code == -1:  # an error inside the stream: the runner died or was unloaded mid-reply
                raise AgentUnavailable(f"Ollama failed mid-reply: {e.error}") from None
            if e.status_code == 404:
                raise AgentError(f"Ollama at {self.host} has no model {self.model}: `ollama pull {self.model}`") from None
            if e.status_code == 429 or e.status_code >= 500:
                raise AgentUnavailable(f"Ollama answered HTTP {e.status_code}: {e.error}") from None
            raise AgentError(f"Ollama refused the request: {e.error}") from None
        except httpx.TimeoutException:
            raise AgentUnavailable(f"Ollama at {self.host} timed out") from None
        except httpx.TransportError as e:
            raise AgentUnavailable(f"Ollama at {self.host} dropped the connection ({type(e).__name__})") from None
        except ValueError as e:  # a truncated or garbled stream line
            raise AgentError(f"Ollama at {self.host} sent a malformed reply ({e})") from None

    # -- models ------------------------------------------------------------------------------------------
    def installed(self) -> dict[str, int]:
        """Installed models and their sizes in bytes."""
        listing = self._call(self._client.list)
        return {str(m.model): int(m.size or 0) for m in listing.models}

    def has_model(self) -> bool:
        return full_name(self.model) in {full_name(name) for name in self.installed()}

    def pull(self, progress: Progress | None = None) -> None:
        """Download the model, showing one progress bar per layer."""
        progress = progress or NullProgress()

        def run() -> None:
            bars: dict[str, Any] = {}
            done: dict[str, int] = {}
            try:
                for update in self._client.pull(self.model, stream=True):
                    digest, total = update.digest, update.total
                    if digest and total:
                        if digest not in bars:
                            bars[digest] = progress.task(f"pull {self.model} {digest[7:19]}", total=total, unit="B")
                            done[digest] = 0
                        step = int(update.completed or 0) - done[digest]
                        if step > 0:
                            bars[digest].update(step)
                            done[digest] += step
                    elif update.status and update.status not in ("success",):
                        progress.message(f"pull {self.model}: {update.status}")
            finally:
                for bar in bars.values():
                    bar.close()

        self._call(run)

    # -- chat --------------------------------------------------------------------------------------------
    def context_window(self) -> int | None:
        """The model's context (its ``*.context_length`` from /api/show), at most ``max_ctx``: Ollama truncates a
        longer prompt silently, so the agent fits its prompt to this. None when the server does not say."""
        if self._window is None:
            self._window = 0
            try:
                shown = self._call(lambda: self._client.show(self.model))
                info = getattr(shown, "modelinfo", None) or (shown.get("model_info") if isinstance(shown, dict) else None) or {}
                lengths = [int(v) for k, v in dict(info).items() if str(k).endswith(".context_length") and isinstance(v, int)]
                self._window = min([*lengths, self.max_ctx]) if lengths else 0
            except AgentError:
                self._window = 0
        return self._window or None

    def _options(self, messages: list[Message]) -> dict[str, Any]:
        cap = min(self.max_ctx, self._window or self.max_ctx)
        options: dict[str, Any] = {
            "num_ctx": min(cap, max(4096, 1 << (estimate_tokens(messages) + 2048).bit_length()))}
        if self.max_tokens:
            options["num_predict"] = self.max_tokens
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    def _once(self, messages: list[Message], schema: dict[str, Any] | None, on_text: OnText | None) -> str:
        deadline = Deadline(self.reply_seconds, self.name)

        def pieces() -> Iterator[str]:
            for chunk in self._client.chat(model=self.model, messages=messages, format=schema, stream=True,
                                           options=self._options(messages), keep_alive=self.keep_alive):
                deadline.check()
                yield (chunk.message.content or "") if chunk.message else ""

        return self._call(lambda: collect(pieces(), on_text))  # type: ignore[no-any-return]

    def chat(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
             on_text: OnText | None = None) -> str:
        return retrying(lambda: self._once(messages, schema, on_text), attempts=self.attempts, backoff=self.backoff,
                        what=self.name)

    unload_settle = 3.0  # seconds Ollama is given to let a model go after keep_alive=0

    def release(self) -> str:
        """Unload the model (keep_alive=0), then make sure Ollama let it go (``ollama ps``, for up to
        ``unload_settle`` seconds): '' when it did, else why it still holds memory the training needs."""
        try:
            self._client.generate(model=self.model, prompt="", keep_alive=0)
        except Exception as e:  # the server gone, the model never loaded: nothing is known to be held
            return f"Ollama did not take the unload of {self.model} ({type(e).__name__}: {str(e)[:200]})"
        end = time.monotonic() + self.unload_settle
        while True:
            try:
                loaded = [m for m in self._client.ps().models if self.model in (m.model, m.name)]
            except Exception:
                return ""  # (an old server without /api/ps: the unload was taken, trust it)
            if not loaded:
                return ""
            if time.monotonic() >= end:
                vram = loaded[0].size_vram or loaded[0].size or 0
                return (f"{self.model} is still loaded in Ollama after the unload ({vram / 2**30:.1f} GB, `ollama ps`): "
                        "it holds memory the training needs")
            time.sleep(0.2)
