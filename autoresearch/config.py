"""User settings: a TOML file in the XDG config directory, overridden by environment, then by flags.

``~/.config/autoresearch/config.toml`` (see ``paths.config_dir``)::

    [llm]
    ollama_host = "http://127.0.0.1:11434"   # or OLLAMA_HOST
    [paths]
    runs_dir = "~/autoresearch-runs"
    data_dir = "~/.cache/autoresearch/data"
    [profile]                                 # any field of hardware.Profile, e.g.
    time_budget = 300
    [agent]                                   # see autoresearch/agent/options.py
    formats = ["search_replace", "whole_file", "knobs"]
    [agent.models."qwen2.5-coder:1.5b*"]
    formats = ["knobs"]
    [notify]                                  # see engine/notify.py: a webhook and/or a desktop notification
    url = "https://ntfy.sh/my-topic"
    [tui.keymap]                              # the app's keys, by binding id (`?` in the app lists them)
    "dashboard.pause" = "ctrl+t"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


class ConfigError(ValueError):
    pass


@dataclass
class Settings:
    ollama_host: str = DEFAULT_OLLAMA_HOST
    runs_dir: Path = field(default_factory=lambda: Path("runs"))
    data_dir: Path = field(default_factory=paths.data_root)
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)  # the [agent] table (per-model settings)
    tui: dict[str, Any] = field(default_factory=dict)  # the [tui] table: keymap = {binding id = "keys"}, ...
    notify: dict[str, Any] = field(default_factory=dict)  # the [notify] table (engine/notify.py checks it)
    source: Path | None = None  # the config file read, if any


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    # OLLAMA_HOST may be given as 0.0.0.0 (the server's bind address); a client must talk to localhost
    host = host.replace("//0.0.0.0", "//127.0.0.1")
    if host.count(":") == 1:  # no port given
        host += ":11434"
    return host


def config_path() -> Path:
    return paths.config_dir() / "config.toml"


def load(path: Path | None = None) -> Settings:
    path = path or config_path()
    raw: dict[str, Any] = {}
    settings = Settings()
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid TOML ({e}); fix or delete it") from e
        settings.source = path
    llm = raw.get("llm", {})
    dirs = raw.get("paths", {})
    if "ollama_host" in llm:
        settings.ollama_host = str(llm["ollama_host"])
    if "runs_dir" in dirs:
        settings.runs_dir = Path(dirs["runs_dir"]).expanduser()
    if "data_dir" in dirs:
        settings.data_dir = Path(dirs["data_dir"]).expanduser()
    settings.profile_overrides = _checked_profile(path, raw.get("profile", {}))
    settings.agent = dict(raw.get("agent", {}))
    settings.notify = raw.get("notify", {})
    tui = raw.get("tui", {})
    if not isinstance(tui, dict) or not isinstance(tui.get("keymap", {}), dict):
        raise ConfigError(f"{path}: [tui] and [tui.keymap] are tables (keymap: binding id = \"keys\")")
    settings.tui = dict(tui)
    if os.environ.get("OLLAMA_HOST"):
        settings.ollama_host = os.environ["OLLAMA_HOST"]
    if os.environ.get("AUTORESEARCH_RUNS_DIR"):
        settings.runs_dir = Path(os.environ["AUTORESEARCH_RUNS_DIR"]).expanduser()
    settings.ollama_host = _normalise_host(settings.ollama_host)
    return settings


_TYPE_WORDS = {float: "a number", int: "a whole number", str: "a string in quotes", bool: "true or false"}


def _checked_profile(path: Path, table: Any) -> dict[str, Any]:
    """The ``[profile]`` table, refused at load (by every command) when a key is unknown or a value has the wrong
    type: a value that cannot apply is never silently ignored."""
    from .hardware import OVERRIDABLE

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [profile] is a table of profile settings ({', '.join(sorted(OVERRIDABLE))})")
    for key, value in table.items():
        kind = OVERRIDABLE.get(key)
        if kind is None:
            raise ConfigError(f"{path}: [profile] has no setting {key!r}; settings: {', '.join(sorted(OVERRIDABLE))}")
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
            isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, str))
        if not ok:
            raise ConfigError(f"{path}: [profile] {key} = {value!r} is not {_TYPE_WORDS[kind]}; fix or remove it")
        if kind in (int, float) and value <= 0 and key not in ("compile",):
            raise ConfigError(f"{path}: [profile] {key} = {value!r} must be positive")
    return dict(table)
