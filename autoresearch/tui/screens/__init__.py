"""The app's screens: the run picker, the dashboard, setup (a new run), review, notes, and the small dialogs."""

from __future__ import annotations

from typing import Any

from ...engine.rundir import RunDir


def run_config(run: RunDir) -> dict[str, Any]:
    """The run's config, or {} when it cannot be read (the poller shows that error; a screen's header stays short)."""
    try:
        return run.config()
    except Exception:  # noqa: BLE001 - said elsewhere; here only the header's facts are missing
        return {}
