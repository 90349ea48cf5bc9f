"""Where autoresearch keeps its files (XDG base directories, overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".autoresearch"  # inside a run directory (or a scratch training): config, ledger, logs, metrics


def _xdg(explicit_var: str, xdg_var: str, fallback: str) -> Path:
    """$explicit_var, else $xdg_var/autoresearch, else ~/fallback/autoresearch."""
    explicit = os.environ.get(explicit_var)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get(xdg_var)
    base = Path(xdg).expanduser() if xdg else Path.home() / fallback
    return base / "autoresearch"


def cache_dir() -> Path:
    """Root of cached data: $AUTORESEARCH_CACHE, else $XDG_CACHE_HOME/autoresearch, else ~/.cache/autoresearch."""
    return _xdg("AUTORESEARCH_CACHE", "XDG_CACHE_HOME", ".cache")


def config_dir() -> Path:
    """User configuration: $AUTORESEARCH_CONFIG_DIR, else $XDG_CONFIG_HOME/autoresearch, else ~/.config/autoresearch."""
    return _xdg("AUTORESEARCH_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")


def data_root() -> Path:
    """Prepared datasets live under <cache>/data/<name>-v<vocab>/."""
    return cache_dir() / "data"


def downloads_root() -> Path:
    """Raw downloads (resumable) live under <cache>/downloads/<dataset>/."""
    return cache_dir() / "downloads"
