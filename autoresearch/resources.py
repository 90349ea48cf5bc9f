"""The files autoresearch ships inside its package: the training templates and the researcher's prompts.

They are package data (``autoresearch/templates/``, ``autoresearch/prompts/``), found through
importlib.resources, so a wheel installed anywhere (pipx, uv tool, a plain venv) can create a run. A checkout
keeps ``train_torch.py``, ``train_mlx.py`` and ``prompts/`` at its top level as links to these: one source of
truth. A user who wants to edit the prompts copies them out (``autoresearch init-prompts DIR``) and points a
run at the copy (``--prompts DIR`` or ``[agent] prompts = "DIR"``).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

TEMPLATES = {"torch": "train_torch.py", "mlx": "train_mlx.py"}


def _package_dir(name: str) -> Path:
    # an installed wheel or a checkout: a real directory on disk (zip imports are not supported: the training
    # subprocess imports the package from a directory)
    return Path(str(resources.files("autoresearch") / name))


def templates_dir() -> Path:
    return _package_dir("templates")


def prompts_dir() -> Path:
    """The prompts that ship with autoresearch."""
    return _package_dir("prompts")


def template_path(backend: str) -> Path:
    return templates_dir() / TEMPLATES[backend]


def package_parent() -> Path:
    """The directory that holds the ``autoresearch`` package (site-packages, or a checkout's root)."""
    return Path(str(resources.files("autoresearch"))).resolve().parent


def copy_prompts(target: Path, *, force: bool = False) -> list[Path]:
    """Copy the shipped prompts into ``target`` for editing; returns the files written.

    Files already there are kept unless ``force`` (a user's edits are never overwritten by surprise): the
    caller reports which were kept.
    """
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(prompts_dir().glob("*.md")):
        dest = target / source.name
        if dest.exists() and not force:
            continue
        shutil.copyfile(source, dest)
        written.append(dest)
    return written


def prompt_names() -> list[str]:
    return sorted(p.name for p in prompts_dir().glob("*.md"))
