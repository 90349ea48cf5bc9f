"""One training, below the engine: planning it on this machine (plan), running the subprocess under a hard
deadline (runner), and `autoresearch train` outside any run (once). The engine builds on these; nothing here
imports the engine.
"""
