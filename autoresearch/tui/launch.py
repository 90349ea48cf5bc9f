"""Opening the app from the command line (`autoresearch`, `autoresearch watch`, `autoresearch run`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .. import config as config_mod
from ..engine.rundir import RunDir


def open_app(run: RunDir | Path | None, *, runs_dir: Path, debug: bool = False, review: bool = False,
             stopped_hint: str = "") -> None:
    """Run the app in this terminal: on ``run``'s dashboard (``review``: its review screen), or on the run picker."""
    from .app import ResearchApp

    settings = config_mod.load()
    path = run.path if isinstance(run, RunDir) else run
    app = ResearchApp(runs_dir, path, keymap=dict(settings.tui.get("keymap") or {}), debug=debug,
                      review=review, stopped_hint=stopped_hint)
    app.run()
    if app.return_code:
        sys.exit(app.return_code)


def serve(run: RunDir | None, *, runs_dir: Path, port: int, debug: bool = False) -> None:
    """Serve the same app to a browser on 127.0.0.1 only (textual-serve has no login)."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise config_mod.ConfigError(
            "serving the app to a browser needs textual-serve: pip install 'autoresearch[serve]'") from None
    command = [sys.executable, "-m", "autoresearch", *(["--debug"] if debug else []), "watch",
               *([str(run.path)] if run else []), "--runs-dir", str(runs_dir)]
    print(f"serving the app on http://127.0.0.1:{port} (this machine only: textual-serve has no login).")
    print(f"From another machine, forward the port over SSH:  ssh -N -L {port}:127.0.0.1:{port} USER@THIS-HOST")
    print("then open http://127.0.0.1:%d there. Ctrl-C stops serving (runs keep going)." % port)
    Server(shlex.join(command), host="127.0.0.1", port=port, title="autoresearch").serve(debug=debug)
