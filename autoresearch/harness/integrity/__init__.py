"""The integrity check: a static (AST) look at an LLM-written train.py before the engine trains it.

It is the first line of the trust boundary; the harness (which owns the data, the clock and the score) and
the runner (hard deadline, metrics read only from the harness's JSON) are the others. The check is meant to
reject an edit that tries to fool the metric while letting ordinary ML code through: models, optimizers,
schedules, ``torch.compile`` and the like are all fine.

What it rejects, by rule (each message says what is not allowed and why, in one sentence, because the
messages go back to the model that wrote the script):

- ``syntax``: the script does not parse.
- ``import``: a module outside the allow-list (torch / mlx per backend, numpy and a few harmless stdlib
  modules), star and relative imports, and restricted names of ``os``, ``sys``, ``gc``, ``inspect``, ``json``.
- ``harness-import``: anything under ``autoresearch`` other than ``autoresearch.harness.<backend>`` (imported
  ``as`` a name) or its public names; the other backend's harness; private (``_``) names.
- ``harness-private``: ``_`` attributes of the harness module, the session and objects derived from them,
  non-public names of the harness module, and the session's private attribute names on any object.
- ``harness-mutation``: assigning, deleting or mutating anything reached from the session or the harness
  module (``H.training_seconds = 0``, ``H.config.time_budget = ...``, ``harness.evaluate_bpb = ...``,
  ``setattr(H, ...)``).
- ``harness-reflection``: ``getattr`` with computed names, ``vars``, ``type``, ``copy`` on harness objects,
  subclassing or instantiating the session class directly.
- ``session``: ``harness.start()`` exactly once, without arguments and outside loops; ``keep_training()``
  and ``finish()`` called.
- ``data-split``: ``harness.batches`` (reads splits directly, bypassing the session's counters) and
  ``evaluate_bpb`` on a split other than ``val``.
- ``environment``: ``AUTORESEARCH_*`` variables (any string naming one, even when built by concatenation),
  non-literal variable names, wholesale reads or changes of ``os.environ``.
- ``file-read`` / ``file-write`` / ``forbidden-path``: ``open`` other than reading ``__file__``, numpy /
  torch / mlx loaders and savers, file methods, and engine paths (``.autoresearch``, ``metrics``,
  ``harness.json``, ``events.jsonl``, ``results.tsv``, ``..``) given to file APIs.
- ``process`` / ``network`` / ``dynamic-code`` / ``introspection``: subprocesses, sockets, ``exec``/``eval``/
  ``compile``/``__import__``, ``globals()``, frame and ``gc`` access, reflective dunders.
- ``monkeypatch``: assigning attributes of imported modules (``time.perf_counter = ...``,
  ``F.cross_entropy = ...``): the harness uses the same modules to time and score the run. Only torch's
  configuration namespaces (``torch.backends``, ``torch._dynamo.config``, ...) may be set.
- ``dispatch-override``: ``torch.Tensor`` subclasses, ``__torch_function__``/``__torch_dispatch__``,
  ``torch.overrides``/``torch.library``/``torch._C``: they can change how the harness's loss is computed
  on the model's logits.
- ``obfuscation``: computed attribute names on modules, ``setattr`` with computed names, ``getattr`` & co.
  used as values.

Names are tracked through aliases (``S = H``, ``cfg = H.config``, ``t = time``), containers (``[H][0]``),
loops, ``with ... as``, function and lambda arguments (also defaults and ``functools.partial``), return values
and object attributes holding the session (``self.h = H``), scope-insensitively: a little conservative, never
silent on the obvious paths. The writes that matter most (the session's clock fields and config knobs, its
private names) are reported on any object, tracked or not. A static check cannot see everything a
determined program can do; it is paired with the harness's own checks.

The package, by responsibility:

- ``rules.py``: the rule ids, their one-line meanings (``RULES``) and the tables of what is allowed/forbidden.
- ``names.py``: what the harness exposes (declared in ``autoresearch.harness.api``) and ``Scope``, which
  resolves the script's names to canonical paths and folds constant strings.
- ``context.py``, ``imports.py``, ``access.py``, ``calls.py``, ``environment.py``: the rule families.
- ``checker.py``: ``check_script`` and the ``Checker`` that walks the AST with all of them.
- ``report.py``: ``Violation``, ``IntegrityReport`` and ``format_report``.

This package is the engine's: train.py never imports it (``autoresearch.harness.torch`` / ``.mlx`` do not
either), and the check itself rejects any import of it.
"""

from __future__ import annotations

from .checker import check_script
from .names import public_names
from .report import IntegrityReport, Violation, format_report
from .rules import (
    BACKENDS,
    DATA_SPLIT,
    DISPATCH,
    DYNAMIC_CODE,
    ENVIRONMENT,
    FILE_READ,
    FILE_WRITE,
    FORBIDDEN_PATH,
    HARNESS_IMPORT,
    HARNESS_MUTATION,
    HARNESS_PRIVATE,
    HARNESS_REFLECTION,
    IMPORT,
    INTROSPECTION,
    MONKEYPATCH,
    NETWORK,
    OBFUSCATION,
    PROCESS,
    RULES,
    SESSION,
    SYNTAX,
    allowed_modules,
)

__all__ = [
    "BACKENDS",
    "DATA_SPLIT",
    "DISPATCH",
    "DYNAMIC_CODE",
    "ENVIRONMENT",
    "FILE_READ",
    "FILE_WRITE",
    "FORBIDDEN_PATH",
    "HARNESS_IMPORT",
    "HARNESS_MUTATION",
    "HARNESS_PRIVATE",
    "HARNESS_REFLECTION",
    "IMPORT",
    "INTROSPECTION",
    "MONKEYPATCH",
    "NETWORK",
    "OBFUSCATION",
    "PROCESS",
    "RULES",
    "SESSION",
    "SYNTAX",
    "IntegrityReport",
    "Violation",
    "allowed_modules",
    "check_script",
    "format_report",
    "public_names",
]
