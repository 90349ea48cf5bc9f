"""The LLM agent against real HTTP servers on 127.0.0.1 speaking OpenAI's and Ollama's chat protocols."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from autoresearch.agent.base import AgentContext, AgentError, AgentUnavailable, load_agent
from autoresearch.agent.llm import LLMAgent
from autoresearch.agent.providers import OllamaProvider, OpenAIProvider
from autoresearch.backends import REPO_ROOT
from autoresearch.backends.knobs import read_knobs

SRC = (REPO_ROOT / "train_torch.py").read_text()
GOOD = ("Description: raise the Muon learning rate\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon, for the 2-D weights inside the blocks\n"
        "=======\nMATRIX_LR = 0.05  # Muon, for the 2-D weights inside the blocks\n>>>>>>> REPLACE\n")
MISS = "Description: oops\n<<<<<<< SEARCH\nMATRIX_LR = 0.4\n=======\nMATRIX_LR = 0.05\n>>>>>>> REPLACE\n"


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next scripted item: a reply text, an HTTP status int, or 'hang'."""

    script: list[Any] = []
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        item = type(self).script.pop(0) if type(self).script else "Description: nothing"
        if item == "hang":
            time.sleep(3)
            return
        if isinstance(item, int):
            self.send_response(item)
            self.end_headers()
            return
        if self.path.endswith("/chat/completions"):
            payload = {"choices": [{"message": {"role": "assistant", "content": item}}]} if item != "garbage" else {"nope": 1}
        else:  # ollama /api/chat
            payload = {"model": body["model"], "created_at": "2026-11-28T00:00:00Z",
                       "message": {"role": "assistant", "content": item}, "done": True}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    Scripted.script, Scripted.seen = [], []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _ctx() -> AgentContext:
    return AgentContext(script=SRC, history=[{"index": 0, "status": "keep", "val_bpb": 2.3, "delta": None, "description": "baseline"}],
                        best_val_bpb=2.3, noise_sigma=0.002, profile={"seq_len": 256, "vocab_size": 2048, "device": "cpu"},
                        hardware="CPU only", time_budget=300)


def _openai(url: str, **kw: Any) -> LLMAgent:
    return LLMAgent(OpenAIProvider("tiny", url + "/v1", api_key="sk-test", backoff=0.01, **kw))


def test_openai_search_replace(server: str) -> None:
    Scripted.script = [GOOD]
    p = _openai(server).propose(_ctx())
    assert p.description == "raise the Muon learning rate"
    assert read_knobs(p.source)["MATRIX_LR"].value == 0.05 and p.meta["format"] == "search_replace"
    req = Scripted.seen[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    prompt = req["body"]["messages"][1]["content"]
    assert "MATRIX_LR = 0.04" in prompt and "| 0 | keep | 2.300000" in prompt and "0.002000" in prompt
    assert "lowest validation bits per byte" in req["body"]["messages"][0]["content"]


def test_a_miss_gets_feedback_and_a_retry(server: str) -> None:
    Scripted.script = [MISS, GOOD]
    p = _openai(server).propose(_ctx())
    assert p.meta["attempts"] == 2
    feedback = Scripted.seen[1]["body"]["messages"][-1]["content"]
    assert "Did you mean these lines?" in feedback and "MATRIX_LR = 0.04" in feedback


def test_fallback_to_knobs_json_with_a_schema(server: str) -> None:
    Scripted.script = ["I think we should go deeper.", "Still no blocks.", "```python\nDEPTH = 5\n```", "nope",
                       '{"description": "one more layer", "changes": {"DEPTH": 5}}']
    p = _openai(server).propose(_ctx())
    assert p.meta["format"] == "knobs" and read_knobs(p.source)["DEPTH"].value == 5
    assert Scripted.seen[-1]["body"]["response_format"]["type"] == "json_schema"


def test_a_reply_that_never_applies_is_an_agent_error(server: str) -> None:
    Scripted.script = ["no"] * 6
    with pytest.raises(AgentError, match="no usable proposal"):
        _openai(server).propose(_ctx())


def test_server_errors_retry_then_report_unavailable(server: str) -> None:
    Scripted.script = [500, 429, GOOD]
    assert _openai(server).propose(_ctx()).description == "raise the Muon learning rate"
    Scripted.script = [503, 503, 503]
    with pytest.raises(AgentUnavailable, match="HTTP 503"):
        _openai(server).propose(_ctx())
    Scripted.script = [400]
    with pytest.raises(AgentError, match="refused"):
        _openai(server).propose(_ctx())
    Scripted.script = ["garbage"]
    with pytest.raises(AgentError, match="not a chat completion"):
        _openai(server).propose(_ctx())


def test_timeouts_and_refused_connections_are_unavailable(server: str) -> None:
    Scripted.script = ["hang", "hang"]
    with pytest.raises(AgentUnavailable, match="unreachable"):
        LLMAgent(OpenAIProvider("tiny", server + "/v1", timeout=0.5, attempts=2, backoff=0.01)).propose(_ctx())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(AgentUnavailable):
        _openai(f"http://127.0.0.1:{port}").propose(_ctx())


def test_ollama_chat_sets_num_ctx(server: str) -> None:
    Scripted.script = [GOOD]
    agent = load_agent("ollama:qwen2.5-coder:7b", host=server)
    p = agent.propose(_ctx())
    assert read_knobs(p.source)["MATRIX_LR"].value == 0.05
    body = Scripted.seen[0]["body"]
    assert Scripted.seen[0]["path"] == "/api/chat" and body["model"] == "qwen2.5-coder:7b"
    assert body["options"]["num_ctx"] >= 4096
    prompt_chars = sum(len(m["content"]) for m in body["messages"])
    assert body["options"]["num_ctx"] * 3 > prompt_chars  # the whole prompt fits: nothing silently truncated


def test_ollama_unavailable(server: str) -> None:
    Scripted.script = [500, 500, 500]
    with pytest.raises(AgentUnavailable):
        LLMAgent(OllamaProvider("m", server, backoff=0.01)).propose(_ctx())


def test_repair_uses_the_broken_script_and_the_feedback(server: str) -> None:
    broken = SRC.replace("import math\n", "import math\nimport subprocess\n")
    fix = ("Description: drop the import\n<<<<<<< SEARCH\nimport math\nimport subprocess\n=======\nimport math\n>>>>>>> REPLACE\n")
    Scripted.script = [fix]
    agent = _openai(server)
    from autoresearch.agent.base import Proposal

    fixed = agent.repair(_ctx(), Proposal("add subprocess", broken, {"format": "search_replace"}), "line 17: subprocess is not allowed")
    assert fixed is not None and "import subprocess" not in fixed.source
    assert "subprocess is not allowed" in Scripted.seen[0]["body"]["messages"][1]["content"]
