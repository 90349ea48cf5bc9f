"""Shared fixtures: a real prepared slice of the stdlib corpus, and an isolated cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.harness.prepare import Prepared, prepare

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"  # the project's shared data, beside the checkout (also in CI)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never read or write the user's real cache or config from tests."""
    base = tmp_path_factory.mktemp("home")
    os.environ["AUTORESEARCH_CACHE"] = str(base / "cache")
    os.environ["AUTORESEARCH_CONFIG_DIR"] = str(base / "config")
    os.environ["AUTORESEARCH_NO_INHIBIT"] = "1"  # engines under test do not hold a developer's desktop awake


@pytest.fixture(scope="session")
def stdlib_small(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """About 3 MB of the stdlib corpus, BPE vocab 512: enough to train a tiny model for a few seconds."""
    root = tmp_path_factory.mktemp("stdlib-data")
    return prepare("stdlib", 512, root=root, max_bytes=3_000_000)
