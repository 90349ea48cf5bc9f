"""A real HTTP server on 127.0.0.1 speaking the LLM protocols with scripted replies (for tests and benchmarks).

Endpoints: OpenAI ``POST /v1/chat/completions`` (JSON or server-sent events when ``stream`` is true),
Ollama ``POST /api/chat`` (JSON or NDJSON stream), ``GET /api/tags``, ``POST /api/pull`` (NDJSON progress),
``POST /api/generate`` (the keep_alive=0 unload), ``GET /api/ps`` (what is loaded), ``POST /api/show`` and llama.cpp's ``GET /props`` (the
context window, when ``FakeLLM.context`` is set), Anthropic ``POST /v1/messages`` (server-sent events).

Each chat request takes the next item of ``FakeLLM.script``:
- a string: the reply text (streamed in small pieces when the client asks for a stream);
- an int: answer with that HTTP status and an empty body;
- ``{"status": 500, "body": "..."}``: that status with that body;
- ``"hang"``: say nothing for 3 s; ``"silent"``: accept and never answer (a wedged server); ``"garbage"``: a 200 whose JSON is not a chat reply;
- ``{"raw": [lines]}``: stream these ``data:`` payloads verbatim (malformed chunks, mid-stream errors);
- ``{"text": "...", "gap": seconds}``: stream the text slowly, one piece per gap;
- ``{"ollama_error": "..."}``: an Ollama stream that starts, then reports an error (a runner that died).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class FakeLLM(BaseHTTPRequestHandler):
    script: list[Any] = []
    seen: list[dict[str, Any]] = []
    models: dict[str, int] = {}  # Ollama's installed models: name -> size
    context: int = 0  # the context window the server says it has (Ollama /api/show, llama.cpp /props); 0: silent
    pull_layers: list[int] = [3_000_000, 40_000]
    stays_loaded: str = ""  # a model Ollama keeps loaded whatever it is asked (GET /api/ps lists it); '': none

    protocol_version = "HTTP/1.1"

    # -- plumbing ----------------------------------------------------------------------------------------
    def _send(self, status: int, data: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, ctype: str, chunks: list[bytes], gap: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            if gap:
                time.sleep(gap)
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *a: object) -> None:
        pass

    # -- requests ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/api/tags":
            models = [{"name": n, "model": n, "modified_at": "2026-11-28T00:00:00Z", "size": s, "digest": "sha256:" + "0" * 64,
                       "details": {}} for n, s in type(self).models.items()]
            self._send(200, json.dumps({"models": models}).encode())
        elif self.path == "/api/ps":  # the loaded models (after an unload: none, unless one stays)
            held = type(self).stays_loaded
            models = [{"name": held, "model": held, "size": 5 * 2**30, "size_vram": 5 * 2**30, "digest": "sha256:" + "0" * 64,
                       "details": {}, "expires_at": "2026-12-02T23:00:00Z"}] if held else []
            self._send(200, json.dumps({"models": models}).encode())
        elif self.path == "/props" and type(self).context:  # llama.cpp server's settings, n_ctx among them
            self._send(200, json.dumps({"default_generation_settings": {"n_ctx": type(self).context}}).encode())
        elif self.path.endswith("/v1/models"):  # the OpenAI protocol's model list
            data = [{"id": n, "object": "model", "owned_by": "local"} for n in type(self).models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        cls = type(self)
        if self.path == "/api/show":  # the model's facts (not a chat: not in ``seen``), its context when given
            info = {"llama.context_length": cls.context} if cls.context else {}
            return self._send(200, json.dumps({"modelfile": "", "details": {}, "model_info": info}).encode())
        cls.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization"),
                         "x-api-key": self.headers.get("x-api-key")})
        if self.path == "/api/pull":
            return self._pull(body)
        if self.path == "/api/generate":
            return self._send(200, json.dumps({"model": body.get("model"), "response": "", "done": True}).encode())
        item = cls.script.pop(0) if cls.script else "Description: nothing"
        if item == "hang":
            time.sleep(3)
            return self._send(200, b"{}")
        if item == "silent":
            time.sleep(3600)
            return None
        if isinstance(item, int):
            return self._send(item, b"")
        if isinstance(item, dict) and "status" in item:
            return self._send(item["status"], item["body"].encode())
        if self.path.endswith("/chat/completions"):
            return self._openai(body, item)
        if self.path == "/v1/messages":
            return self._anthropic(item)
        return self._ollama(body, item)

    def _pull(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        lines = [{"status": "pulling manifest"}]
        for i, size in enumerate(type(self).pull_layers):
            digest = f"sha256:{i:064d}"
            for done in (0, size // 2, size):
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": size, "completed": done})
        lines += [{"status": "verifying sha256 digest"}, {"status": "success"}]
        type(self).models[str(name)] = sum(type(self).pull_layers)
        self._stream("application/x-ndjson", [json.dumps(x).encode() + b"\n" for x in lines])

    def _openai(self, body: dict[str, Any], item: Any) -> None:
        if item == "garbage":
            return self._send(200, b'{"nope": 1}')
        if isinstance(item, dict) and "raw" in item:
            return self._stream("text/event-stream", [f"data: {x}\n\n".encode() for x in item["raw"]])
        text, gap = (item["text"], item["gap"]) if isinstance(item, dict) else (item, 0.0)
        if not body.get("stream"):
            payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
            return self._send(200, json.dumps(payload).encode())
        chunks = [{"choices": [{"delta": {"role": "assistant"}}]}]
        chunks += [{"choices": [{"delta": {"content": p}}]} for p in _pieces(text)]
        chunks += [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
        data = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        self._stream("text/event-stream", data, gap)

    def _ollama(self, body: dict[str, Any], item: Any) -> None:
        if isinstance(item, dict) and "ollama_error" in item:  # the runner dies mid-reply
            lines = [{"model": body.get("model"), "message": {"role": "assistant", "content": "Descr"}, "done": False},
                     {"error": item["ollama_error"]}]
            return self._stream("application/x-ndjson", [json.dumps(x).encode() + b"\n" for x in lines])
        text = item["text"] if isinstance(item, dict) else item

        def msg(content: str, done: bool) -> dict[str, Any]:
            return {"model": body.get("model"), "created_at": "2026-11-28T00:00:00Z",
                    "message": {"role": "assistant", "content": content}, "done": done}

        if body.get("stream") is False:
            return self._send(200, json.dumps(msg(text, True)).encode())
        lines = [msg(p, False) for p in _pieces(text)] + [msg("", True)]
        self._stream("application/x-ndjson", [json.dumps(x).encode() + b"\n" for x in lines])

    def _anthropic(self, item: Any) -> None:
        if isinstance(item, dict) and "raw" in item:
            return self._stream("text/event-stream", [f"data: {x}\n\n".encode() for x in item["raw"]])
        text = item["text"] if isinstance(item, dict) else item
        events = [{"type": "message_start", "message": {"id": "m1", "role": "assistant", "content": []}},
                  {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
        events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
                   for p in _pieces(text)]
        events += [{"type": "content_block_stop", "index": 0}, {"type": "message_stop"}]
        self._stream("text/event-stream", [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events])


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-stream (timeouts under test) is expected here


class LLMServer:
    """Start ``FakeLLM`` on a free port of 127.0.0.1; ``url`` is its base address."""

    def __init__(self) -> None:
        FakeLLM.script, FakeLLM.seen, FakeLLM.models, FakeLLM.context = [], [], {}, 0
        self._srv = _QuietServer(("127.0.0.1", 0), FakeLLM)
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
