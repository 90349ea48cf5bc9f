"""The experiment engine: one run directory researched until stopped.

rundir (the run's git repository, frozen config, lock), ledger (the append-only event record and its
reduction to experiments), policy (keep / discard / confirm against the measured noise), loop (propose,
check, commit, train, decide, record), control (steering from any client), create (a new run from the
machine's profile), status (what a client shows). UI-free: the TUI and headless mode are its clients.
"""
