"""Where autoresearch keeps its files (XDG base directories, overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of cached data: $AUTORESEARCH_CACHE, else $XDG_CACHE_HOME/autoresearch, else ~/.cache/autoresearch."""
    explicit = os.environ.get("AUTORESEARCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autoresearch"


def data_root() -> Path:
    """Prepared datasets live under <cache>/data/<name>-v<vocab>/."""
    return cache_dir() / "data"


def downloads_root() -> Path:
    """Raw downloads (resumable) live under <cache>/downloads/<dataset>/."""
    return cache_dir() / "downloads"


def config_dir() -> Path:
    """User configuration: $AUTORESEARCH_CONFIG_DIR, else $XDG_CONFIG_HOME/autoresearch, else ~/.config/autoresearch."""
    explicit = os.environ.get("AUTORESEARCH_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "autoresearch"
