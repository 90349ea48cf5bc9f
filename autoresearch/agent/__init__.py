"""The researcher: what proposes each change to train.py.

base (the Agent the engine calls, errors, the context it sees), factory (an agent from its ``--agent`` spec),
llm (an LLM agent over a provider: prompts, edit formats, repair), providers / ollama / anthropic (the HTTP
protocols), edits (applying a model's reply to the script), options (per-model settings), search (the no-LLM
optimizer over the knobs block).
"""
