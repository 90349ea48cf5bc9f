"""`python -m autoresearch`: the same as the `autoresearch` command (used to launch a detached engine)."""

from .cli import main

main()
