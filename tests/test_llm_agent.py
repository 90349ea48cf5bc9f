"""The LLM agent against real HTTP servers on 127.0.0.1 speaking OpenAI's and Ollama's chat protocols."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from autoresearch.agent.base import AgentContext, AgentError, AgentUnavailable
from autoresearch.agent.factory import load_agent
from autoresearch.agent.llm import LLMAgent, make_llm_agent
from autoresearch.agent.ollama import OllamaProvider
from autoresearch.agent.providers import OpenAIProvider
from autoresearch.resources import template_path
from autoresearch.backends.knobs import read_knobs

sys.path.insert(0, str(Path(__file__).parent))
from llm_servers import FakeLLM, LLMServer  # noqa: E402

SRC = template_path("torch").read_text()
GOOD = ("Description: raise the Muon learning rate\n<<<<<<< SEARCH\nMATRIX_LR = 0.04  # Muon, for the 2-D weights inside the blocks\n"
        "=======\nMATRIX_LR = 0.05  # Muon, for the 2-D weights inside the blocks\n>>>>>>> REPLACE\n")
MISS = "Description: oops\n<<<<<<< SEARCH\nMATRIX_LR = 0.4\n=======\nMATRIX_LR = 0.05\n>>>>>>> REPLACE\n"


Scripted = FakeLLM


@pytest.fixture()
def server() -> Iterator[str]:
    srv = LLMServer()
    yield srv.url
    srv.close()


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


def test_a_huge_reply_is_refused_and_not_sent_back_whole(server: str) -> None:
    """An audit saw a 2 MB reply become a 4.25 MB repair prompt: the reply is refused, and what goes back is clipped."""
    Scripted.script = [GOOD.replace("Description:", "x" * 2_000_000 + "\nDescription:"), GOOD]
    p = _openai(server).propose(_ctx())
    assert p.meta["attempts"] == 2 and read_knobs(p.source)["MATRIX_LR"].value == 0.05
    retry = Scripted.seen[1]["body"]["messages"]
    assert sum(len(m["content"]) for m in retry) < 100_000
    assert "characters left out" in retry[-2]["content"] and "more than 100,000" in retry[-1]["content"]


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
        LLMAgent(OpenAIProvider("tiny", server + "/v1", read_timeout=0.5, attempts=2, backoff=0.01)).propose(_ctx())
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


# -- streaming --------------------------------------------------------------------------------------------
def test_openai_replies_stream_and_report_progress(server: str) -> None:
    Scripted.script = [GOOD]
    agent = _openai(server)
    pieces: list[str] = []
    agent.on_text = pieces.append
    p = agent.propose(_ctx())
    assert Scripted.seen[0]["body"]["stream"] is True
    assert len(pieces) > 10 and "".join(pieces) == GOOD  # it arrived in pieces, all of it
    assert p.meta["reply_chars"] == len(GOOD) and p.meta["seconds"] >= 0
    Scripted.script = [GOOD]
    plain = LLMAgent(OpenAIProvider("tiny", server + "/v1", stream=False)).propose(_ctx())
    assert Scripted.seen[-1]["body"]["stream"] is False and plain.description == p.description


def test_a_malformed_or_failing_stream(server: str) -> None:
    Scripted.script = [{"raw": ['{"choices": [{"delta": {"content": "Descr"}}]}', "{not json"]}]
    with pytest.raises(AgentError, match="malformed stream chunk"):
        _openai(server).provider.chat([{"role": "user", "content": "hi"}])
    Scripted.script = [{"raw": ['{"error": {"message": "model crashed"}}']}] * 3
    with pytest.raises(AgentUnavailable, match="model crashed"):
        _openai(server).provider.chat([{"role": "user", "content": "hi"}])


def test_a_model_that_writes_forever_is_cut_off(server: str) -> None:
    Scripted.script = [{"text": "la " * 40, "gap": 0.05}]
    provider = OpenAIProvider("tiny", server + "/v1", reply_seconds=0.3, read_timeout=5)
    with pytest.raises(AgentError, match="still writing its reply after"):
        provider.chat([{"role": "user", "content": "hi"}])


def test_structured_output_falls_back_to_what_the_server_takes(server: str) -> None:
    # llama-cpp-python's server answers json_schema with a 500 naming response_format (seen for real)
    rejected = {"status": 500, "body": '{"error": {"message": "response_format.type: Input should be \'text\' or \'json_object\'"}}'}
    knobs = '{"description": "one more layer", "changes": {"DEPTH": 5}}'
    Scripted.script = [rejected, knobs, knobs]
    provider = OpenAIProvider("tiny", server + "/v1", backoff=0.01)
    agent = LLMAgent(provider, formats=("knobs",))
    p = agent.propose(_ctx())
    assert read_knobs(p.source)["DEPTH"].value == 5
    formats = [s["body"].get("response_format", {}).get("type") for s in Scripted.seen]
    assert formats == ["json_schema", "json_object"] and "schema" in Scripted.seen[1]["body"]["response_format"]
    agent.propose(_ctx())  # the next request goes straight to what worked
    assert Scripted.seen[2]["body"]["response_format"]["type"] == "json_object" and len(Scripted.seen) == 3
    prompt = Scripted.seen[0]["body"]["messages"][1]["content"]
    assert "The knobs now:" in prompt and "DEPTH = 4" in prompt  # the knobs format lists names and values


# -- Ollama: models, pull, release --------------------------------------------------------------------------
def test_ollama_lists_and_pulls_models_with_progress(server: str) -> None:
    from autoresearch.progress import RecordingProgress

    FakeLLM.models = {"llama3.2:latest": 2_000_000_000}
    provider = OllamaProvider("qwen2.5-coder:7b", server)
    assert provider.installed() == {"llama3.2:latest": 2_000_000_000}
    assert OllamaProvider("llama3.2", server).has_model()  # no tag means :latest
    assert not provider.has_model()
    progress = RecordingProgress()
    provider.pull(progress)
    assert provider.has_model()
    assert [(t.total, t.done, t.closed) for t in progress.tasks] == [(3_000_000, 3_000_000, True), (40_000, 40_000, True)]
    assert "pulling manifest" in " ".join(progress.messages)


def test_ollama_streams_and_unloads_only_when_memory_is_shared(server: str) -> None:
    Scripted.script = [GOOD]
    agent = load_agent("ollama:qwen2.5-coder:7b", host=server)
    pieces: list[str] = []
    agent.on_text = pieces.append  # type: ignore[attr-defined]
    agent.propose(_ctx())
    assert Scripted.seen[0]["body"]["stream"] is True and "".join(pieces) == GOOD
    agent.release(shared_memory=False)  # type: ignore[attr-defined]
    assert not [s for s in Scripted.seen if s["path"] == "/api/generate"]
    agent.release(shared_memory=True)  # type: ignore[attr-defined]
    unload = [s for s in Scripted.seen if s["path"] == "/api/generate"]
    assert len(unload) == 1 and unload[0]["body"]["keep_alive"] == 0
    always = load_agent("ollama:m", host=server, config={"unload_before_training": True})
    assert always.release(shared_memory=False) == ""  # type: ignore[attr-defined]
    assert len([s for s in Scripted.seen if s["path"] == "/api/generate"]) == 2


def test_a_model_that_ollama_keeps_loaded_after_the_unload_is_reported(server: str) -> None:
    Scripted.stays_loaded = "qwen2.5-coder:7b"
    try:
        agent = load_agent("ollama:qwen2.5-coder:7b", host=server)
        agent.provider.unload_settle = 0.5  # type: ignore[attr-defined]  # (not 3 s)
        held = agent.release(shared_memory=True)  # type: ignore[attr-defined]
    finally:
        Scripted.stays_loaded = ""
    assert held == ("qwen2.5-coder:7b is still loaded in Ollama after the unload (5.0 GB, `ollama ps`): it holds "
                    "memory the training needs")
    assert load_agent("ollama:qwen2.5-coder:7b", host=server).release(shared_memory=True) == ""  # type: ignore[attr-defined]


def test_ollama_missing_model_says_how_to_pull(server: str) -> None:
    Scripted.script = [{"status": 404, "body": '{"error": "model \\"m\\" not found, try pulling it first"}'}]
    with pytest.raises(AgentError, match="ollama pull m"):
        LLMAgent(OllamaProvider("m", server, backoff=0.01)).propose(_ctx())


# -- Anthropic -------------------------------------------------------------------------------------------------
def test_anthropic_messages_stream(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    Scripted.script = [GOOD]
    agent = load_agent("anthropic:claude-x", base_url=server)
    p = agent.propose(_ctx())
    assert p.description == "raise the Muon learning rate"
    req = Scripted.seen[0]
    assert req["path"] == "/v1/messages" and req["x-api-key"] == "sk-ant-test" and req["auth"] is None
    assert "lowest validation bits per byte" in req["body"]["system"]
    assert [m["role"] for m in req["body"]["messages"]] == ["user"] and req["body"]["stream"] is True
    Scripted.script = [529, 529, 529]
    with pytest.raises(AgentUnavailable, match="HTTP 529"):
        load_agent("anthropic:claude-x", base_url=server, config={"attempts_per_format": 1}).propose(_ctx())
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(AgentError, match="ANTHROPIC_API_KEY"):
        load_agent("anthropic:claude-x", base_url=server).propose(_ctx())


# -- per-model settings -------------------------------------------------------------------------------------
def test_formats_are_chosen_per_model() -> None:
    from autoresearch.agent.options import model_size_billions, resolve

    assert model_size_billions("qwen2.5-coder:7b") == 7 and model_size_billions("gemma3:270m") == 0.27
    assert model_size_billions("qwen2.5-coder:1.5b-instruct-q4_K_M") == 1.5 and model_size_billions("gpt-4o") is None
    assert resolve("gemma3:270m")["formats"][0] == "knobs"  # small models start with the constrained format
    assert resolve("qwen2.5-coder:14b")["formats"] == ["search_replace", "whole_file", "knobs"]
    config = {"max_tokens": 2048, "models": {"qwen2.5-coder:*": {"formats": ["whole_file"]}}}
    assert resolve("qwen2.5-coder:14b", config) == {"formats": ["whole_file"], "max_tokens": 2048}
    assert resolve("qwen2.5-coder:14b", config, formats=["knobs"], max_tokens=None)["formats"] == ["knobs"]
    with pytest.raises(AgentError, match="unknown setting 'format'"):
        resolve("m", {"format": "knobs"})
    with pytest.raises(AgentError, match="formats must be"):
        resolve("m", {"models": {"*": {"formats": ["diff"]}}})
    agent = load_agent("openai:gemma3-270m", base_url="http://127.0.0.1:9/v1")
    assert agent.formats == ("knobs", "search_replace")  # type: ignore[attr-defined]


def test_run_start_checks_the_ollama_model(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.cli import _check_agent

    agent = load_agent("ollama:qwen2.5-coder:7b", host=server)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(AgentError, match=r"does not have qwen2.5-coder:7b: `ollama pull qwen2.5-coder:7b`, or run again with --pull"):
        _check_agent(agent, pull=False)
    _check_agent(agent, pull=True)
    assert "qwen2.5-coder:7b" in FakeLLM.models and [s for s in Scripted.seen if s["path"] == "/api/pull"]
    _check_agent(agent, pull=False)  # now installed: nothing asked
    down = load_agent("ollama:m", host="http://127.0.0.1:9")
    with pytest.raises(AgentError, match="ollama serve.*OLLAMA_HOST"):
        _check_agent(down, pull=False)


def test_a_missing_key_is_said_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.cli import _check_agent

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(AgentError, match="ANTHROPIC_API_KEY"):
        _check_agent(load_agent("anthropic:claude-x"), pull=False)
    with pytest.raises(AgentError, match="OPENAI_API_KEY.*--llm-url"):
        _check_agent(load_agent("openai:gpt-x"), pull=False)
    _check_agent(load_agent("openai:local", base_url="http://127.0.0.1:9/v1"), pull=False)  # a local server needs no key


def test_review_findings_on_providers(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.agent.options import model_size_billions, resolve

    # an Ollama runner that dies mid-reply is an outage to wait for, not an unusable proposal
    Scripted.script = [{"ollama_error": "llama runner process has terminated"}] * 3
    with pytest.raises(AgentUnavailable, match="mid-reply"):
        LLMAgent(OllamaProvider("m", server, backoff=0.01)).propose(_ctx())
    # a 503 that mentions response_format is an outage; it does not give up structured output for the night
    Scripted.script = [{"status": 503, "body": "overloaded while validating response_format"}] * 3
    provider = OpenAIProvider("tiny", server + "/v1", backoff=0.01)
    with pytest.raises(AgentUnavailable):
        provider.chat([{"role": "user", "content": "hi"}], schema={"type": "object"})
    assert provider._format_mode == 0
    # a key echoed back by a proxy never reaches messages (and so the ledger)
    Scripted.script = [{"status": 401, "body": "bad key sk-secret-123 for user"}]
    with pytest.raises(AgentError) as refused:
        OpenAIProvider("tiny", server + "/v1", api_key="sk-secret-123").chat([{"role": "user", "content": "hi"}])
    assert "sk-secret-123" not in str(refused.value) and "***" in str(refused.value)
    # settings: whole numbers for float settings; keys and URLs per provider only; the largest size in a name
    assert resolve("m", {"reply_seconds": 3600})["reply_seconds"] == 3600
    with pytest.raises(AgentError, match="unknown setting 'api_key'"):
        resolve("m", {"api_key": "k"})
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agent = load_agent("openai:m", config={"anthropic": {"api_key": "ant-key"}, "openai": {"base_url": server + "/v1"}})
    assert agent.provider.base_url == server + "/v1" and agent.provider._key == ""  # type: ignore[attr-defined]
    assert model_size_billions("qwen2.5:7b-instruct-1m") == 7


def test_a_resumed_run_waits_for_a_server_that_is_not_up_yet() -> None:
    from autoresearch.cli import _check_agent

    down = load_agent("ollama:m", host="http://127.0.0.1:9")
    _check_agent(down, pull=False, wait_if_down=True)  # a warning, not an error
    with pytest.raises(AgentError):
        _check_agent(down, pull=False)


def test_readiness_lists_what_a_server_has(server: str) -> None:
    """The setup screen's view of a researcher: Ollama's models with sizes, an OpenAI server's list, dead servers."""
    from autoresearch.agent.readiness import check, fits, ollama_models, openai_models

    FakeLLM.models = {"qwen2.5-coder:7b": 4_700_000_000, "gemma3:270m": 290_000_000}
    listed = ollama_models(server)
    assert listed.problem == "" and listed.models == [("gemma3:270m", 290_000_000), ("qwen2.5-coder:7b", 4_700_000_000)]
    assert [n for n, _ in openai_models(server + "/v1").models] == ["qwen2.5-coder:7b", "gemma3:270m"]
    dead = ollama_models("http://127.0.0.1:9")
    assert dead.models == [] and "ollama serve" in dead.problem and "search agent" in dead.problem
    assert "no server answers at http://127.0.0.1:9/v1" in openai_models("http://127.0.0.1:9/v1").problem
    assert fits(4_700_000_000, 24) and not fits(4_700_000_000, 8) and fits(290_000_000, 8)
    assert check(load_agent("ollama:qwen2.5-coder:7b", host=server)).ok
    missing = check(load_agent("ollama:llama3:70b", host=server))
    assert not missing.ok and missing.pullable and "ollama pull llama3:70b" in missing.problem
    down = check(load_agent("ollama:m", host="http://127.0.0.1:9"))
    assert down.unreachable and not down.pullable
    assert check(load_agent("search")).ok


# -- the context window -------------------------------------------------------------------------------------
KNOBS_REPLY = '{"description": "a higher Muon learning rate", "changes": {"MATRIX_LR": 0.05}}'


def test_a_small_window_said_by_the_server_fits_the_prompt(server: str) -> None:
    """llama.cpp's /props says n_ctx 2048 (llama-cpp-python's default): the prompt drops the history and, in the
    knobs format, the script; nothing is sent that the server would truncate or refuse."""
    Scripted.context = 2048
    Scripted.script = [KNOBS_REPLY]
    agent = _openai(server)
    assert agent.window() == (2048, "openai:tiny says so")
    p = agent.propose(_ctx())
    assert p.meta["format"] == "knobs" and read_knobs(p.source)["MATRIX_LR"].value == 0.05
    (chat,) = [s for s in Scripted.seen if s["path"] == "/v1/chat/completions"]
    sent = sum(len(m["content"]) for m in chat["body"]["messages"])
    assert sent // 3 + 512 <= 2048 and "left out to fit the model's context window" in chat["body"]["messages"][1]["content"]


def test_a_window_too_small_for_any_prompt_stops_with_the_sizes(server: str) -> None:
    from autoresearch.agent.base import ContextTooSmall

    Scripted.context = 512
    with pytest.raises(ContextTooSmall, match=r"context window is 512 tokens \(openai:tiny says so\).*-c 8192"):
        _openai(server).propose(_ctx())
    assert not [s for s in Scripted.seen if s["path"] == "/v1/chat/completions"]  # nothing sent in vain
    # the config's window wins over the server's silence
    Scripted.context = 0
    assert LLMAgent(OpenAIProvider("tiny", server + "/v1"), context_window=4096).window()[0] == 4096


def test_an_error_inside_the_stream_is_reported_as_that_error(server: str) -> None:
    """llama.cpp answers HTTP 200 and then says in the stream that the prompt exceeds its context: that is the
    error, never 'no edit blocks found' (and not an outage to wait for)."""
    from autoresearch.agent.base import ContextTooSmall

    too_long = json.dumps({"error": {"code": 400, "message": "the request exceeds the available context size, try "
                                                             "increasing it", "type": "exceed_context_size_error"}})
    Scripted.script = [{"raw": [too_long]}]
    with pytest.raises(ContextTooSmall, match="refused the prompt as longer than its context window.*exceeds the available"):
        _openai(server).propose(_ctx())


def test_ollama_fits_num_ctx_to_the_models_context(server: str) -> None:
    Scripted.models = {"gemma3:270m": 290_000_000}
    Scripted.context = 32768
    agent = make_llm_agent("ollama", "gemma3:270m", host=server, max_ctx=8192)
    assert agent.window()[0] == 8192  # the model says 32k; the configured cap is smaller


def test_a_window_named_in_a_refusal_is_learnt_and_the_prompt_fitted(server: str) -> None:
    """llama-cpp-python started with its defaults (n_ctx 2048) says nothing of its window until it refuses a prompt
    (HTTP 400 naming it): the agent learns it, fits the prompt and asks again."""
    refusal = json.dumps({"error": {"message": "Requested tokens (5210) exceed context window of 2048",
                                    "type": "invalid_request_error"}})
    Scripted.script = [{"status": 400, "body": refusal}, KNOBS_REPLY]
    agent = _openai(server)
    p = agent.propose(_ctx())
    assert p.meta["format"] == "knobs" and agent.window()[0] == 2048
    chats = [s for s in Scripted.seen if s["path"] == "/v1/chat/completions"]
    assert len(chats) == 2 and "left out to fit" in chats[1]["body"]["messages"][1]["content"]


def test_an_empty_stream_is_asked_again_without_streaming_for_the_real_error(server: str) -> None:
    """Measured with llama-cpp-python 0.3 started with its defaults: a prompt over its 2048 tokens gets HTTP 200 and
    a stream that ends with nothing; the same request without streaming answers 400 'maximum context length is 2048
    tokens'. The agent asks again without streaming, learns the window and fits the prompt."""
    refusal = json.dumps({"error": {"message": "This model's maximum context length is 2048 tokens. However, you "
                                               "requested 7024 tokens", "code": "context_length_exceeded"}})
    Scripted.script = [{"raw": []}, {"status": 400, "body": refusal}, KNOBS_REPLY]
    agent = _openai(server)
    p = agent.propose(_ctx())
    assert p.meta["format"] == "knobs" and agent.window()[0] == 2048
    chats = [s for s in Scripted.seen if s["path"] == "/v1/chat/completions"]
    assert [c["body"]["stream"] for c in chats] == [True, False, True]
