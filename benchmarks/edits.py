"""Edit success rate per format: how often a model's reply is well-formed and applies to train.py, on the
first try and after the feedback retries.

Offline (default): replays the recorded conversations in benchmarks/replies/*.jsonl through today's edit
code (so a better matcher shows up as a better rate). Each line is one conversation:
{"model", "format", "script": the train.py it answered (a copy under replies/scripts/, named by its sha256),
"turns": [reply, reply after feedback, ...]}.
`handwritten.jsonl` holds replies written here in the styles mid-size coder models produce (indentation
drift, stale SEARCH text, fences, elided lines, prose around JSON); the other files were recorded from live
models with --record.

Live: asks a running server for N proposals per format through the real agent (prompts, provider, retries)
and reports the same table for that model; --record FILE saves the conversations for offline replays.

    python benchmarks/edits.py
    python benchmarks/edits.py --llm-url http://127.0.0.1:8765/v1 --model gemma3-270m --n 8 --record benchmarks/replies/gemma3-270m.jsonl
    python benchmarks/edits.py --ollama http://127.0.0.1:11434 --model qwen2.5-coder:7b --n 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autoresearch.agent.base import AgentContext  # noqa: E402
from autoresearch.agent.edits import EditError  # noqa: E402
from autoresearch.agent.llm import LLMAgent  # noqa: E402
from autoresearch.agent.options import FORMATS  # noqa: E402
from autoresearch.harness.integrity import check_script  # noqa: E402

REPLIES = REPO / "benchmarks" / "replies"


def outcome(fmt: str, script: str, reply: str) -> str:
    """"ok", or why the reply is unusable: the edit error, or the integrity check's first problem."""
    agent = LLMAgent.__new__(LLMAgent)  # only _apply is used: no provider needed
    agent.name, agent.prompts = "replay", REPO / "prompts"
    try:
        proposal = agent._apply(fmt, script, reply)
    except EditError as e:
        return str(e).splitlines()[0][:80]
    report = check_script(proposal.source, backend="torch")
    return "ok" if report.ok else "integrity: " + str(report.violations[0])[:70]


def score(conversations: list[dict[str, Any]], base: Path = REPLIES) -> dict[tuple[str, str], dict[str, Any]]:
    """Success counts per (model, format); a conversation's script is a path relative to ``base`` ('' = the template)."""
    table: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"n": 0, "first": 0, "retry": 0, "why": defaultdict(int)})
    for conv in conversations:
        script = (base / conv["script"] if conv["script"] else REPO / "train_torch.py").read_text()
        row = table[(conv["model"], conv["format"])]
        row["n"] += 1
        results = [outcome(conv["format"], script, reply) for reply in conv["turns"]]
        row["first"] += results[0] == "ok"
        row["retry"] += "ok" in results
        if "ok" not in results:
            row["why"][results[-1]] += 1
    return table


def print_table(table: dict[tuple[str, str], dict[str, Any]], title: str) -> None:
    print(title)
    print(f"{'model':<22}{'format':<16}{'n':>4}{'first try':>11}{'after retries':>15}  most common failure")
    for (model, fmt), row in sorted(table.items()):
        why = max(row["why"].items(), key=lambda kv: kv[1])[0] if row["why"] else ""
        print(f"{model:<22}{fmt:<16}{row['n']:>4}{row['first'] / row['n']:>11.0%}{row['retry'] / row['n']:>15.0%}  {why}")


def keep_script(text: str, directory: Path) -> str:
    """A copy of the script the replies answered, beside the recording (the template changes; the replies stay
    valid for their copy). Returns its path relative to ``directory``."""
    name = f"scripts/{hashlib.sha256(text.encode()).hexdigest()[:12]}.py.txt"  # data, not code
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return name


class Recorder:
    """Wraps a provider and keeps every reply of the current conversation."""

    def __init__(self, provider: Any) -> None:
        self.provider, self.name, self.model = provider, provider.name, provider.model
        self.turns: list[str] = []

    def chat(self, messages: list[dict[str, str]], **kw: Any) -> str:
        reply = self.provider.chat(messages, **kw)
        self.turns.append(reply)
        return reply

    def release(self) -> None:
        pass


def live(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.ollama:
        from autoresearch.agent.ollama import OllamaProvider

        provider: Any = OllamaProvider(args.model, args.ollama, max_tokens=args.max_tokens)
    else:
        from autoresearch.agent.providers import OpenAIProvider

        provider = OpenAIProvider(args.model, args.llm_url, max_tokens=args.max_tokens)
    recorder = Recorder(provider)
    script = (REPO / "train_torch.py").read_text()
    script_ref = keep_script(script, Path(args.record).resolve().parent) if args.record else ""
    ctx = AgentContext(script=script, history=[{"index": 0, "status": "keep", "val_bpb": 2.386, "delta": None,
                                                "description": "baseline"}],
                       best_val_bpb=2.386, noise_sigma=0.002, profile={"device": "cpu", "seq_len": 256, "vocab_size": 2048},
                       hardware="CPU only: 2 threads", time_budget=60)
    conversations = []
    for fmt in args.formats:
        agent = LLMAgent(recorder, formats=(fmt,), attempts_per_format=args.attempts)  # type: ignore[arg-type]
        for i in range(args.n):
            recorder.turns = []
            t0 = time.perf_counter()
            try:
                agent._converse(ctx, agent._user_prompt(ctx, fmt), fmt)
            except EditError:
                pass
            conversations.append({"model": args.model, "format": fmt, "script": script_ref,
                                  "turns": list(recorder.turns), "seconds": round(time.perf_counter() - t0, 1)})
            print(f"  {fmt} {i + 1}/{args.n}: {len(recorder.turns)} turn(s), {time.perf_counter() - t0:.0f}s", flush=True)
    if args.record:
        with open(args.record, "a") as f:
            for conv in conversations:
                f.write(json.dumps(conv) + "\n")
    return conversations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm-url", help="an OpenAI-compatible base URL (live mode)")
    ap.add_argument("--ollama", help="an Ollama host (live mode)")
    ap.add_argument("--model", default="")
    ap.add_argument("--n", type=int, default=8, help="proposals per format (live)")
    ap.add_argument("--attempts", type=int, default=2, help="tries per proposal, as the agent's default")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--record", help="append the live conversations to this JSONL file")
    args = ap.parse_args()
    if args.llm_url or args.ollama:
        convs = live(args)
        base = Path(args.record).resolve().parent if args.record else REPLIES
        print_table(score(convs, base), f"\nlive: {args.model}")
        return
    convs = []
    for path in sorted(REPLIES.glob("*.jsonl")):
        convs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print_table(score(convs), f"recorded replies ({len(convs)} conversations in {REPLIES.relative_to(REPO)}):")


if __name__ == "__main__":
    main()
