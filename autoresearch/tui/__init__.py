"""The terminal app (Textual): a client of run directories, like `autoresearch status`.

app (the App: picker, dashboard, dialogs, keymap), launch (opening it from the command line, serving it to
a browser), poller (the worker thread that reads a run and posts messages), keys (binding ids and keymap
checks), screens/ and widgets/. Nothing here runs the loop: engines are processes of their own.
"""
