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
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = [
    "BACKENDS",
    "RULES",
    "IntegrityReport",
    "Violation",
    "allowed_modules",
    "check_script",
    "format_report",
    "public_names",
]

BACKENDS = ("torch", "mlx")

SYNTAX = "syntax"
IMPORT = "import"
HARNESS_IMPORT = "harness-import"
HARNESS_PRIVATE = "harness-private"
HARNESS_MUTATION = "harness-mutation"
HARNESS_REFLECTION = "harness-reflection"
SESSION = "session"
DATA_SPLIT = "data-split"
ENVIRONMENT = "environment"
FILE_READ = "file-read"
FILE_WRITE = "file-write"
FORBIDDEN_PATH = "forbidden-path"
PROCESS = "process"
NETWORK = "network"
DYNAMIC_CODE = "dynamic-code"
INTROSPECTION = "introspection"
MONKEYPATCH = "monkeypatch"
DISPATCH = "dispatch-override"
OBFUSCATION = "obfuscation"

RULES = {
    SYNTAX: "the script must parse",
    IMPORT: "only allow-listed modules, no star or relative imports, restricted os/sys/gc/inspect/json names",
    HARNESS_IMPORT: "only autoresearch.harness.<backend> (as a name) and its public names",
    HARNESS_PRIVATE: "no private or non-public attributes of the harness or the session",
    HARNESS_MUTATION: "no assignment, deletion or mutation of the harness, the session or its config",
    HARNESS_REFLECTION: "no reflection, copying, subclassing or direct construction of harness objects",
    SESSION: "harness.start() exactly once without arguments; keep_training() and finish() called",
    DATA_SPLIT: "no direct split readers (harness.batches) and no evaluation of splits other than val",
    ENVIRONMENT: "no AUTORESEARCH_* variables, no non-literal names, no wholesale os.environ use",
    FILE_READ: "no file reads except train.py's own source",
    FILE_WRITE: "no file writes",
    FORBIDDEN_PATH: "no engine paths (.autoresearch, metrics, harness.json, events.jsonl, results.tsv, ..)",
    PROCESS: "no subprocesses, threads, signals or process exits",
    NETWORK: "no network access",
    DYNAMIC_CODE: "no exec/eval/compile/__import__/importlib/globals or other run-time code",
    INTROSPECTION: "no frames, gc object walks, inspect internals or reflective dunders",
    MONKEYPATCH: "no assignments to attributes of imported modules (torch config namespaces excepted)",
    DISPATCH: "no tensor subclasses or dispatch overrides that could change how the loss is computed",
    OBFUSCATION: "no computed attribute names on modules, no getattr/setattr used as values",
}

_SESSION = "@session"  # canonical name of the object harness.start() returns
_HARNESS_MODULES = frozenset(f"autoresearch.harness.{b}" for b in BACKENDS)
_UNKNOWN = "\x00"  # an unknown piece of a partially folded string

_COMMON_MODULES = (
    "__future__", "abc", "bisect", "cmath", "collections", "contextlib", "copy", "dataclasses", "enum",
    "functools", "gc", "heapq", "inspect", "itertools", "json", "math", "numbers", "numpy", "operator", "os",
    "random", "re", "statistics", "sys", "time", "typing", "warnings",
)
_BACKEND_MODULES = {"torch": ("torch", "triton"), "mlx": ("mlx",)}

# module -> the only attributes train.py may use
_RESTRICTED = {
    "os": frozenset({"environ", "getenv", "cpu_count", "process_cpu_count", "sched_getaffinity", "getpid",
                     "path", "sep", "linesep", "pathsep", "name"}),
    "sys": frozenset({"stdout", "stderr", "platform", "version", "version_info", "maxsize", "float_info",
                      "int_info", "byteorder", "argv", "exit", "getrecursionlimit", "setrecursionlimit",
                      "getsizeof", "implementation", "hexversion", "flags"}),
    "gc": frozenset({"collect", "enable", "disable", "isenabled", "freeze", "unfreeze", "get_freeze_count",
                     "set_threshold", "get_threshold", "get_count", "get_stats"}),
    "inspect": frozenset({"signature", "Signature", "Parameter", "isclass", "isfunction", "ismethod",
                          "isroutine", "isgeneratorfunction", "iscoroutinefunction", "cleandoc", "getdoc"}),
    "json": frozenset({"dumps", "loads", "JSONDecodeError", "JSONEncoder", "JSONDecoder"}),
}
_RESTRICTED_WHY = {
    "os": "only os.environ[\"NAME\"] / os.environ.get(\"NAME\") / os.getenv(\"NAME\"), os.cpu_count, "
          "os.sched_getaffinity, os.getpid and os.path are allowed",
    "sys": "only sys.stdout/stderr, version and platform facts, argv, exit and the recursion limit are allowed",
    "gc": "only collect/enable/disable/freeze and the thresholds are allowed, not walks over live objects",
    "inspect": "only signature and the is* predicates are allowed, not frames, members or sources",
    "json": "only json.dumps/json.loads are allowed (no file I/O)",
}
_OS_RULES = {
    **dict.fromkeys(("system", "popen", "fork", "forkpty", "kill", "killpg", "spawnl", "spawnle", "spawnlp",
                     "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
                     "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "_exit",
                     "abort", "setsid", "setpgrp", "nice", "register_at_fork"), PROCESS),
    **dict.fromkeys(("putenv", "unsetenv", "environb", "getenvb"), ENVIRONMENT),
    **dict.fromkeys(("remove", "unlink", "rename", "renames", "replace", "mkdir", "makedirs", "rmdir",
                     "removedirs", "write", "truncate", "ftruncate", "chmod", "chown", "link", "symlink", "utime",
                     "mkfifo", "mknod", "chdir", "fchdir", "chroot", "dup2", "pipe"), FILE_WRITE),
    **dict.fromkeys(("open", "fdopen", "read", "listdir", "scandir", "walk", "fwalk", "stat", "lstat",
                     "readlink", "getcwd", "access"), FILE_READ),
}

# canonical prefix -> (rule, why); a use of the prefix or anything under it is reported
_BLOCKED = {
    "torch.load": (FILE_READ, "reads and unpickles a file"),
    "torch.save": (FILE_WRITE, "writes a file"),
    "torch.from_file": (FILE_READ, "reads a file"),
    "torch.serialization": (FILE_READ, "reads and writes files"),
    "torch.jit.load": (FILE_READ, "reads a file"),
    "torch.jit.save": (FILE_WRITE, "writes a file"),
    "torch.export.load": (FILE_READ, "reads a file"),
    "torch.export.save": (FILE_WRITE, "writes a file"),
    "torch.package": (FILE_READ, "reads and writes packaged files"),
    "torch.onnx": (FILE_WRITE, "writes model files"),
    "torch.utils.tensorboard": (FILE_WRITE, "writes log files"),
    "torch.hub": (NETWORK, "downloads code and weights"),
    "torch.utils.model_zoo": (NETWORK, "downloads weights"),
    "torch.profiler.tensorboard_trace_handler": (FILE_WRITE, "writes trace files"),
    "triton.runtime.cache": (FILE_WRITE, "reads and writes cache files"),
    "torch.utils.cpp_extension": (DYNAMIC_CODE, "compiles and loads native code in subprocesses"),
    "torch.multiprocessing": (PROCESS, "starts processes the harness cannot measure"),
    "torch.distributed": (PROCESS, "starts or joins other processes"),
    "torch.overrides": (DISPATCH, "can change how torch functions (and the harness's loss) behave"),
    "torch.library": (DISPATCH, "can replace torch operators, including those the harness's loss uses"),
    "torch.utils._python_dispatch": (DISPATCH, "can intercept every torch operation, including the harness's"),
    "torch._C": (DISPATCH, "reaches torch's dispatcher and internals"),
    "numpy.load": (FILE_READ, "reads a file"),
    "numpy.loadtxt": (FILE_READ, "reads a file"),
    "numpy.genfromtxt": (FILE_READ, "reads a file"),
    "numpy.fromfile": (FILE_READ, "reads a file"),
    "numpy.fromregex": (FILE_READ, "reads a file"),
    "numpy.memmap": (FILE_READ, "maps a file (such as a data shard) into memory"),
    "numpy.DataSource": (FILE_READ, "opens files and URLs"),
    "numpy.lib.format": (FILE_READ, "reads and writes .npy files"),
    "numpy.lib.npyio": (FILE_READ, "reads and writes files"),
    "numpy.rec": (FILE_READ, "reads record files"),
    "numpy.core": (FILE_READ, "exposes numpy internals such as memmap and file readers"),
    "numpy._core": (FILE_READ, "exposes numpy internals such as memmap and file readers"),
    "numpy.save": (FILE_WRITE, "writes a file"),
    "numpy.savez": (FILE_WRITE, "writes a file"),
    "numpy.savez_compressed": (FILE_WRITE, "writes a file"),
    "numpy.savetxt": (FILE_WRITE, "writes a file"),
    "numpy.ctypeslib": (DYNAMIC_CODE, "loads native libraries"),
    "numpy.f2py": (DYNAMIC_CODE, "compiles and loads native code"),
    "numpy.distutils": (DYNAMIC_CODE, "builds native code"),
    "numpy.testing": (PROCESS, "runs subprocesses and test machinery"),
    "mlx.core.load": (FILE_READ, "reads a file"),
    "mlx.core.save": (FILE_WRITE, "writes a file"),
    "mlx.core.savez": (FILE_WRITE, "writes a file"),
    "mlx.core.savez_compressed": (FILE_WRITE, "writes a file"),
    "mlx.core.save_safetensors": (FILE_WRITE, "writes a file"),
    "mlx.core.save_gguf": (FILE_WRITE, "writes a file"),
    "mlx.core.export_function": (FILE_WRITE, "writes a file"),
    "mlx.core.export_to_dot": (FILE_WRITE, "writes a file"),
    "mlx.core.import_function": (FILE_READ, "reads a file"),
    "mlx.core.distributed": (PROCESS, "starts or joins other processes"),
    "mlx.core.metal.start_capture": (FILE_WRITE, "writes a GPU trace file"),
    "contextlib.chdir": (FILE_WRITE, "changes the working directory the harness resolves paths against"),
}

# attribute names reported on any object: (rule, why)
_ATTR_RULES = {
    "tofile": (FILE_WRITE, "writes an array to a file"),
    "from_file": (FILE_READ, "reads a file"),
    "load_weights": (FILE_READ, "reads weights from a file"),
    "save_weights": (FILE_WRITE, "writes weights to a file"),
    "write_text": (FILE_WRITE, "writes a file"),
    "write_bytes": (FILE_WRITE, "writes a file"),
    "read_text": (FILE_READ, "reads a file"),
    "read_bytes": (FILE_READ, "reads a file"),
    "export_chrome_trace": (FILE_WRITE, "writes a trace file"),
    "export_stacks": (FILE_WRITE, "writes a file"),
    "export_memory_timeline": (FILE_WRITE, "writes a file"),
    "_dump_snapshot": (FILE_WRITE, "writes a memory snapshot file"),
    "load_library": (DYNAMIC_CODE, "loads native code"),
    "as_subclass": (DISPATCH, "turns a tensor into a subclass that can change how the harness's loss is computed"),
    "_make_subclass": (DISPATCH, "builds tensor subclasses that can change how the harness's loss is computed"),
    "_make_wrapper_subclass": (DISPATCH, "builds tensor subclasses that can change how the loss is computed"),
    **dict.fromkeys(("f_back", "f_globals", "f_locals", "f_code", "f_builtins", "tb_frame", "gi_frame",
                     "cr_frame", "ag_frame"), (INTROSPECTION, "reaches interpreter frames and other code's variables")),
}

# dunders that give reflective access; fine on self/cls/super(), reported elsewhere
_REFLECTIVE_DUNDERS = frozenset({
    "__dict__", "__class__", "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__",
    "__bases__", "__base__", "__mro__", "__getattribute__", "__getattr__", "__setattr__", "__delattr__",
    "__self__", "__func__", "__reduce__", "__reduce_ex__", "__loader__", "__spec__", "__import__",
    "__defaults__", "__kwdefaults__",
})
_DISPATCH_METHODS = frozenset({"__torch_function__", "__torch_dispatch__"})
_MUTATORS = frozenset({"update", "clear", "pop", "popitem", "setdefault", "append", "extend", "insert", "remove",
                       "sort", "reverse", "add", "discard", "__setitem__", "__delitem__"})
# session fields that name the harness's bookkeeping: writing them is reported on any object but self
_STATE_NAMES = frozenset({"training_seconds", "uncounted_seconds", "time_budget", "t_start", "uncounted_steps",
                          "budget_slack", "max_steps", "eval_tokens", "data_dir"})
# module attributes that may be assigned (configuration namespaces)
_CONFIG_PREFIXES = ("torch.backends.", "torch._dynamo.config.", "torch._inductor.config.",
                    "torch._functorch.config.")
_SESSION_CLASSES = frozenset({"Session", "TorchSession", "MLXSession"})
_FILE_API_ROOTS = frozenset({"os", "json", "pickle", "shutil", "pathlib", "io", "glob", "autoresearch", _SESSION})
_PATH_FRAGMENTS = (".autoresearch", "metrics", "harness.json", "events.jsonl", "results.tsv")
_PARENT_DIR = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
_IDENT_PATH = re.compile(r"^[A-Za-z_][\w.]*$")

# builtins and what using them means
_DYNAMIC_BUILTINS = {
    "exec": "exec() runs code this check cannot see; write the code in train.py directly.",
    "eval": "eval() runs code this check cannot see; write the expression in train.py directly.",
    "compile": "the builtin compile() builds code this check cannot see (for the model use torch.compile or "
               "mx.compile).",
    "__import__": "__import__() imports modules by name behind this check's back; use a plain import of an "
                  "allowed module.",
    "globals": "globals() gives name-based access to every variable, including the harness session; refer to "
               "variables directly.",
    "locals": "locals() gives name-based access to variables, including the harness session; refer to variables "
              "directly.",
    "breakpoint": "breakpoint() opens a debugger that can run arbitrary code; remove it.",
}
_REFLECTION_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr", "vars", "open"})
_MODULE_NAMES_BUILTINS = {
    "__builtins__": (DYNAMIC_CODE, "`__builtins__` gives access to every builtin, including exec and open, "
                                   "behind this check's back; use builtins directly."),
    "__loader__": (FILE_READ, "`__loader__` can read arbitrary files; train.py reads nothing but its data "
                              "from the harness."),
    "__spec__": (INTROSPECTION, "`__spec__` exposes the import machinery; train.py has no use for it."),
}

# why a module outside the allow-list is not allowed, by category
_IMPORT_CATEGORIES = {
    PROCESS: ("subprocess", "multiprocessing", "threading", "_thread", "concurrent", "asyncio", "signal", "pty",
              "sched", "atexit", "resource", "faulthandler", "ctypes", "cffi"),
    NETWORK: ("socket", "ssl", "urllib", "urllib3", "http", "httpx", "requests", "aiohttp", "ftplib", "smtplib",
              "poplib", "imaplib", "telnetlib", "xmlrpc", "websocket", "websockets", "socketserver", "selectors",
              "select", "huggingface_hub", "ollama", "datasets"),
    DYNAMIC_CODE: ("importlib", "builtins", "runpy", "code", "codeop", "types", "marshal", "imp", "pkgutil",
                   "zipimport", "ast", "dis", "site", "sitecustomize", "traceback", "weakref", "ctypes"),
    FILE_READ: ("pickle", "shelve", "dill", "cloudpickle", "joblib", "io", "pathlib", "shutil", "tempfile", "glob",
                "fnmatch", "fileinput", "mmap", "gzip", "bz2", "lzma", "zipfile", "tarfile", "csv", "sqlite3",
                "codecs", "linecache", "tokenize", "safetensors", "pyarrow", "pandas", "h5py", "zarr"),
}
_IMPORT_WHY = {
    PROCESS: "starts or controls processes, threads or signals, outside what the harness measures",
    NETWORK: "reaches the network, and a training run gets its data only from the harness",
    DYNAMIC_CODE: "loads, builds or inspects code at run time where this check cannot see it",
    FILE_READ: "works with files, and train.py reads and writes none because its data comes from H.train_batches",
}


@dataclass(frozen=True)
class Violation:
    """One problem: where (1-based line, 0-based column), which rule, and a one-sentence message."""

    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message} [{self.rule}]"


@dataclass
class IntegrityReport:
    """The result of check_script: ``ok`` when there are no violations."""

    violations: list[Violation] = field(default_factory=list)
    backend: str = "torch"

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}

    def by_rule(self, rule: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]


def format_report(report: IntegrityReport) -> str:
    """The report as feedback for the model that wrote the script (one line per problem)."""
    if report.ok:
        return "Integrity check passed: train.py uses only the harness's public API."
    n = len(report.violations)
    lines = [
        f"Integrity check failed: train.py was rejected before training ({n} problem{'s' if n != 1 else ''}). "
        "Fix each line below and keep the rest of your change; the harness alone provides the data, the clock "
        "and the score:"
    ]
    lines += [f"- {v}" for v in report.violations]
    return "\n".join(lines)


def allowed_modules(backend: str = "torch") -> tuple[str, ...]:
    """Top-level modules train.py may import for ``backend`` (besides the harness)."""
    return tuple(sorted(_COMMON_MODULES + _BACKEND_MODULES[backend]))


@lru_cache(maxsize=None)
def public_names(backend: str = "torch") -> frozenset[str]:
    """The harness module's ``__all__``, read from its source (no torch/mlx import needed)."""
    fallback = {
        "torch": {"CausalityResult", "DataError", "HarnessError", "TorchSession", "LogitsError", "TorchBatches",
                  "batches", "check_causality", "evaluate_bpb", "start"},
        "mlx": {"CausalityResult", "DataError", "HarnessError", "LogitsError", "MLXBatches", "MLXSession",
                "batches", "check_causality", "evaluate_bpb", "start"},
    }[backend]
    try:
        text = (_harness_dir() / f"{backend}.py").read_text(encoding="utf-8")
        m = re.search(r"^__all__\s*=\s*(\[[^\]]*\])", text, re.M)
        names = ast.literal_eval(m.group(1)) if m else None
    except (OSError, ValueError, SyntaxError):
        names = None
    return frozenset(names) if names else frozenset(fallback)


@lru_cache(maxsize=None)
def _session_private_names() -> frozenset[str]:
    """Private attribute and method names of the harness's session classes (from their source)."""
    names = {"_tokens_uncounted", "_t_first_batch", "_t_last", "_t_progress", "_last_loss", "_finished",
             "_train_batch_size", "_evaluate", "_causality", "_count_params", "_numpy_batches", "_maybe_log",
             "_write_metrics", "_base_metrics", "_fail", "_print_summary"}
    here = _harness_dir()
    for name in ("session.py", "torch.py", "mlx.py"):
        try:
            text = (here / name).read_text(encoding="utf-8")
        except OSError:
            continue
        if name == "session.py":
            names.update(re.findall(r"self\.(_[A-Za-z]\w*)", text))
        names.update(re.findall(r"def (_[A-Za-z]\w*)\(\s*self\b", text))
    return frozenset(names)


def _harness_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "harness"


def check_script(source: str, *, backend: str = "torch") -> IntegrityReport:
    """Check an agent-written training script before it runs. See the module docstring for the rules."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    try:
        tree = ast.parse(source, filename="train.py")
    except SyntaxError as e:
        line = e.lineno or 1
        msg = f"train.py does not parse ({e.msg}); fix the syntax before anything else."
        return IntegrityReport([Violation(line, max(0, (e.offset or 1) - 1), SYNTAX, msg)], backend)
    except ValueError as e:  # e.g. null bytes
        return IntegrityReport([Violation(1, 0, SYNTAX, f"train.py does not parse ({e}); fix the file.")], backend)
    return IntegrityReport(_Checker(tree, backend).run(), backend)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_tracked(c: str) -> bool:
    """The session, the harness, or something reached from them (not a container that merely holds them)."""
    if c.endswith("[]"):
        return False
    return c.startswith(_SESSION) or c == "autoresearch" or c.startswith("autoresearch.")


def _container_of(found: frozenset[str]) -> frozenset[str]:
    return frozenset(c + "[]" for c in found if len(c) < 200)


def _element_of(found: frozenset[str]) -> frozenset[str]:
    """An item of a literal container is what was put in; an item of anything else lies inside it ({})."""
    return frozenset(c[:-2] if c.endswith("[]") else c + "{}" for c in found if len(c) < 200)


def _is_module_path(c: str) -> bool:
    return not c.startswith("@")


def _selfish(node: ast.AST) -> bool:
    """self / cls / super(): a class's own object."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _src(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        return "<expr>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Checker:
    def __init__(self, tree: ast.Module, backend: str) -> None:
        self.tree = tree
        self.backend = backend
        self.hm = f"autoresearch.harness.{backend}"
        self.other_hms = {f"autoresearch.harness.{b}" for b in BACKENDS if b != backend}
        self.public = public_names(backend)
        self.private_names = _session_private_names()
        self.allowed = frozenset(allowed_modules(backend))
        self.violations: list[Violation] = []
        self.parent: dict[ast.AST, ast.AST] = {}
        self.alias: dict[str, set[str]] = {}
        self.consts: dict[str, str] = {}
        self.funcs: dict[str, list[ast.AST]] = {}
        self.methods: dict[str, list[ast.AST]] = {}
        self.classes: dict[str, list[ast.ClassDef]] = {}
        self.returns: dict[ast.AST, list[ast.expr]] = {}
        self.events: list[tuple[str, ast.expr, bool]] = []  # (name, value, value is a container of it)
        self.wild: dict[str, set[str]] = {}  # attribute name -> what any `x.name` may hold (the session)
        self.import_bound: set[str] = set()
        self.other_bound: set[str] = set()
        self._cache: dict[int, frozenset[str]] = {}
        self.start_calls: list[ast.Call] = []
        self.finish_calls = 0
        self.keep_calls = 0

    # -- reporting --------------------------------------------------------------------------------------
    def add(self, node: ast.AST | None, rule: str, message: str, line: int | None = None) -> None:
        if line is None:
            line = getattr(node, "lineno", 1) if node is not None else 1
        col = getattr(node, "col_offset", 0) if node is not None else 0
        self.violations.append(Violation(line, col, rule, message))

    def run(self) -> list[Violation]:
        self.collect()
        self.resolve_aliases()
        for node in ast.walk(self.tree):
            handler = self.HANDLERS.get(type(node))
            if handler is not None:
                handler(self, node)
        self.check_session()
        if "__file__" in self.other_bound or "__file__" in self.import_bound:
            self.add(None, FILE_READ, "train.py may not rebind `__file__`: open(__file__) is the one file read it "
                                      "is allowed, and only for its own source.")
        seen: set[tuple[int, str, str]] = set()
        out = []
        for v in sorted(self.violations, key=lambda v: (v.line, v.col)):
            key = (v.line, v.rule, v.message)
            if key not in seen:
                seen.add(key)
                out.append(v)
        return out

    # -- pass 1: parents, definitions, bindings ---------------------------------------------------------
    def collect(self) -> None:
        calls: list[ast.Call] = []
        stores: Counter[str] = Counter()
        single_assigns: list[tuple[str, ast.expr]] = []
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if isinstance(node, ast.Lambda):
                    self.returns[node] = [node.body]
                else:
                    where = self.methods if isinstance(self.parent.get(node), ast.ClassDef) else self.funcs
                    where.setdefault(node.name, []).append(node)
                    self.returns.setdefault(node, [])
                    self.other_bound.add(node.name)
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                    self.other_bound.add(arg.arg)
                    stores[arg.arg] += 1
                positional = a.posonlyargs + a.args
                for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
                    self.events.append((arg.arg, default, False))
                for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                    if default is not None:
                        self.events.append((arg.arg, default, False))
            elif isinstance(node, ast.ClassDef):
                self.classes.setdefault(node.name, []).append(node)
                self.other_bound.add(node.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self._bind_import(a.asname, a.name)
                    else:
                        root = a.name.split(".")[0]
                        self._bind_import(root, root)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self._bind_import(a.asname or a.name, f"{node.module}.{a.name}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
                if node.value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                owner = self.parent.get(node)
                for target in targets:
                    self._bind_target(target, node.value)
                    if isinstance(owner, ast.ClassDef) and isinstance(target, ast.Name):
                        # class attributes: reachable as Class.name and self.name
                        self.events.append((f"{owner.name}.{target.id}", node.value, False))
                        self.events.append((f"self.{target.id}", node.value, False))
                if len(targets) == 1 and isinstance(targets[0], ast.Name):
                    single_assigns.append((targets[0].id, node.value))
                    if isinstance(node.value, ast.Lambda):
                        self.funcs.setdefault(targets[0].id, []).append(node.value)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                if isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)):
                    for elt in node.iter.elts:
                        self._bind_target(node.target, elt)
                elif _dotted(node.target):
                    self.events.append((_dotted(node.target), node.iter, True))  # an element of the iterable
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._bind_target(item.optional_vars, item.context_expr)
            elif isinstance(node, ast.Call):
                calls.append(node)
            elif isinstance(node, ast.Return) and node.value is not None:
                owner = self.parent.get(node)
                while owner is not None and not isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    owner = self.parent.get(owner)
                if owner is not None:
                    self.returns.setdefault(owner, []).append(node.value)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                stores[node.id] += 1
                self.other_bound.add(node.id)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.other_bound.add(node.name)
        for call in calls:
            self._bind_call_arguments(call.func, call.args, call.keywords)
            if call.args and "functools.partial" in self.resolve(call.func, cache=False):
                self._bind_call_arguments(call.args[0], call.args[1:], call.keywords)
        # names bound exactly once to a string: their value, for folding computed names
        for _ in range(2):
            for name, value in single_assigns:
                if stores[name] == 1 and name not in self.consts:
                    folded = self.fold(value)
                    if folded is not None:
                        self.consts[name] = folded

    def _bind_import(self, name: str, path: str) -> None:
        self.alias.setdefault(name, set()).add(path)
        self.import_bound.add(name)

    def _bind_target(self, target: ast.AST, value: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self._bind_target(t, v)
            return
        key = _dotted(target)
        if key:
            self.events.append((key, value, False))

    def _bind_call_arguments(self, f: ast.expr, args: list[ast.expr], keywords: list[ast.keyword]) -> None:
        """Parameters of local functions/methods called with an argument take that argument's names."""
        targets: list[tuple[ast.AST, int]] = []
        if isinstance(f, ast.Lambda):
            targets.append((f, 0))
        elif isinstance(f, ast.Name):
            targets += [(d, 0) for d in self.funcs.get(f.id, [])]
            for cls in self.classes.get(f.id, []):
                targets += [(d, 1) for d in cls.body if isinstance(d, ast.FunctionDef) and d.name == "__init__"]
        elif isinstance(f, ast.Attribute):
            targets += [(d, 1) for d in self.methods.get(f.attr, [])]
        for d, offset in targets:
            a = d.args
            positional = a.posonlyargs + a.args
            for i, arg in enumerate(args):
                if isinstance(arg, ast.Starred):
                    break
                if offset + i < len(positional):
                    self.events.append((positional[offset + i].arg, arg, False))
                elif a.vararg is not None:
                    self.events.append((a.vararg.arg, arg, False))
            names = {p.arg for p in positional + a.kwonlyargs}
            for kw in keywords:
                if kw.arg in names:
                    self.events.append((kw.arg, kw.value, False))

    def resolve_aliases(self) -> None:
        for _ in range(8):
            changed = False
            for key, value, element in self.events:
                found = self.resolve(value, cache=False)
                if element:
                    found = _element_of(found)
                if found:
                    have = self.alias.setdefault(key, set())
                    if not found <= have:
                        have |= found
                        changed = True
                    if "." in key:  # an object attribute holding the session or the harness itself
                        whole = {c for c in found if c == _SESSION or c in _HARNESS_MODULES}
                        if whole and not whole <= self.wild.get(key.rsplit(".", 1)[1], set()):
                            self.wild.setdefault(key.rsplit(".", 1)[1], set()).update(whole)
                            changed = True
            if not changed:
                break

    # -- names -> canonical paths -----------------------------------------------------------------------
    def resolve(self, node: ast.AST, cache: bool = True, depth: int = 0) -> frozenset[str]:
        """Canonical names an expression may stand for: 'torch.nn.functional', '@session.config', ..."""
        if cache:
            hit = self._cache.get(id(node))
            if hit is not None:
                return hit
        out = self._resolve(node, depth)
        if cache:
            self._cache[id(node)] = out
        return out

    def _resolve(self, node: ast.AST, depth: int) -> frozenset[str]:
        if depth > 8:
            return frozenset()
        if isinstance(node, ast.Name):
            return frozenset(self.alias.get(node.id, ()))
        if isinstance(node, ast.Attribute):
            found = set()
            key = _dotted(node)
            if key and key in self.alias:
                found |= self.alias[key]
            found |= {f"{b}.{node.attr}" for b in self._resolve(node.value, depth + 1) if len(b) < 200}
            found |= self.wild.get(node.attr, set())
            return frozenset(found)
        if isinstance(node, ast.Subscript):
            return _element_of(self._resolve(node.value, depth + 1))
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            inner = frozenset().union(*(self._resolve(e.value if isinstance(e, ast.Starred) else e, depth + 1)
                                        for e in node.elts))
            return _container_of(inner)
        if isinstance(node, ast.Dict):
            return _container_of(frozenset().union(*(self._resolve(v, depth + 1) for v in node.values)))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            return _container_of(self._resolve(node.elt, depth + 1))
        if isinstance(node, ast.DictComp):
            return _container_of(self._resolve(node.value, depth + 1))
        if isinstance(node, ast.Call):
            return self._resolve_call(node, depth)
        if isinstance(node, ast.NamedExpr):
            return self._resolve(node.value, depth + 1)
        if isinstance(node, ast.IfExp):
            return self._resolve(node.body, depth + 1) | self._resolve(node.orelse, depth + 1)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self._resolve(v, depth + 1) for v in node.values))
        if isinstance(node, ast.Await):
            return self._resolve(node.value, depth + 1)
        return frozenset()

    def _resolve_call(self, node: ast.Call, depth: int) -> frozenset[str]:
        f = node.func
        funcs = self._resolve(f, depth + 1)
        if any(c in {f"autoresearch.harness.{b}.start" for b in BACKENDS} for c in funcs):
            return frozenset({_SESSION})
        if isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) >= 2:
            name = self.fold(node.args[1])
            if name is not None:
                return frozenset(f"{b}.{name}" for b in self._resolve(node.args[0], depth + 1))
        if node.args and (funcs & {"copy.copy", "copy.deepcopy", "contextlib.nullcontext"} or (
                isinstance(f, ast.Name) and f.id in ("iter", "list", "tuple", "set", "frozenset", "sorted",
                                                     "reversed"))):
            return self._resolve(node.args[0], depth + 1)  # the same object, or a container of the same items
        if isinstance(f, ast.Name) and f.id == "next" and node.args:
            return _element_of(self._resolve(node.args[0], depth + 1))
        if "typing.cast" in funcs and len(node.args) == 2:
            return self._resolve(node.args[1], depth + 1)
        defs: list[ast.AST] = []
        if isinstance(f, ast.Lambda):
            defs = [f]
        elif isinstance(f, ast.Name):
            defs = self.funcs.get(f.id, [])
        elif isinstance(f, ast.Attribute):
            defs = self.methods.get(f.attr, [])
        found: set[str] = set()
        for d in defs:
            for value in self.returns.get(d, []):
                found |= self._resolve(value, depth + 2)
        return frozenset(found)

    def fold(self, node: ast.AST, partial: bool = False) -> str | None:
        """The string an expression evaluates to, when the check can tell (partial: unknown parts as \\x00)."""
        unknown = _UNKNOWN if partial else None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else unknown
        if isinstance(node, ast.Name):
            return self.consts.get(node.id, unknown)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                left, right = self.fold(node.left, partial), self.fold(node.right, partial)
                return left + right if left is not None and right is not None else unknown
            if isinstance(node.op, ast.Mod) and partial:
                return (self.fold(node.left, True) or "") + _UNKNOWN
            return unknown
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    parts.append(str(v.value))
                elif isinstance(v, ast.FormattedValue):
                    inner = self.fold(v.value, partial) if v.format_spec is None and v.conversion in (-1, 115) else None
                    if inner is None:
                        if not partial:
                            return None
                        inner = _UNKNOWN
                    parts.append(inner)
            return "".join(parts)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            s = node.slice
            if s.lower is None and s.upper is None and isinstance(s.step, ast.UnaryOp) and \
                    isinstance(s.step.op, ast.USub) and isinstance(s.step.operand, ast.Constant) and \
                    s.step.operand.value == 1:
                base = self.fold(node.value, partial)
                return base[::-1] if base is not None else unknown
            return unknown
        if isinstance(node, ast.Call):
            return self._fold_call(node, partial)
        return unknown

    def _fold_call(self, node: ast.Call, partial: bool) -> str | None:
        unknown = _UNKNOWN if partial else None
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr in ("upper", "lower", "strip", "lstrip", "rstrip", "casefold", "title", "capitalize",
                          "swapcase") and not node.args:
                base = self.fold(f.value, partial)
                return getattr(base, f.attr)() if base is not None else unknown
            if f.attr == "replace" and len(node.args) == 2:
                base = self.fold(f.value, partial)
                old, new = self.fold(node.args[0]), self.fold(node.args[1])
                if base is not None and old is not None and new is not None:
                    return base.replace(old, new)
                return unknown
            if f.attr == "join" and len(node.args) == 1:
                sep = self.fold(f.value, partial)
                items = self._fold_items(node.args[0], partial)
                return sep.join(items) if sep is not None and items is not None else unknown
            if f.attr == "format" and partial:
                return (self.fold(f.value, True) or "") + _UNKNOWN
            return unknown
        if isinstance(f, ast.Name) and len(node.args) == 1 and not node.keywords:
            if f.id == "str":
                return self.fold(node.args[0], partial)
            if f.id == "chr" and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, int):
                try:
                    return chr(node.args[0].value)
                except (ValueError, OverflowError):
                    return unknown
        return unknown

    def _fold_items(self, node: ast.AST, partial: bool) -> list[str] | None:
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.fold(e, partial) for e in node.elts]
            return None if any(i is None for i in items) else items  # type: ignore[return-value]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "reversed" and len(node.args) == 1:
                base = self.fold(node.args[0], partial)
                if base is not None:
                    return list(reversed(base))
                inner = self._fold_items(node.args[0], partial)
                return list(reversed(inner)) if inner is not None else None
            if node.func.id == "map" and len(node.args) == 2 and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id == "chr" and isinstance(node.args[1], (ast.List, ast.Tuple)):
                out = []
                for e in node.args[1].elts:
                    if not (isinstance(e, ast.Constant) and isinstance(e.value, int)):
                        return [_UNKNOWN] if partial else None
                    out.append(chr(e.value))
                return out
        return [_UNKNOWN] if partial else None

    def is_builtin(self, name: str) -> bool:
        """A name refers to the builtin unless only imports bind it (``from torch import compile``)."""
        return name not in self.import_bound or name in self.other_bound

    # -- pass 2: rules ------------------------------------------------------------------------------------
    def on_import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == "autoresearch" or a.name.startswith("autoresearch."):
                if a.name == self.hm:
                    if not a.asname:
                        self.add(node, HARNESS_IMPORT,
                                 f"write `import {self.hm} as harness`: the bare form binds the whole autoresearch "
                                 "package, whose internals train.py may not reach.")
                else:
                    self._internal_import(node, a.name)
            else:
                self._module_import(node, a.name)

    def on_import_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, IMPORT, "relative imports are not allowed in train.py: it is a standalone script that "
                                   "imports only allow-listed modules and the harness.")
            return
        mod = node.module or ""
        for a in node.names:
            if a.name == "*":
                self.add(node, IMPORT, f"`from {mod} import *` is not allowed in train.py: import the names you "
                                       "use explicitly so the check can see them.")
                continue
            if mod == self.hm:
                self._harness_name(node, a.name)
            elif mod == "autoresearch.harness" and a.name == self.backend:
                continue
            elif mod == "autoresearch" or mod.startswith("autoresearch."):
                self._internal_import(node, f"{mod}.{a.name}")
            else:
                self._module_import(node, f"{mod}.{a.name}")

    def _harness_name(self, node: ast.AST, name: str) -> None:
        public = ", ".join(sorted(self.public))
        if name.startswith("_"):
            self.add(node, HARNESS_IMPORT, f"`{name}` is private to {self.hm} (names starting with _ are harness "
                                           f"internals); import only its public names: {public}.")
        elif name not in self.public:
            self.add(node, HARNESS_IMPORT, f"`{name}` is not a public name of {self.hm}; import only its public "
                                           f"names: {public}.")
        elif name == "batches":
            self._batches(node)

    def _internal_import(self, node: ast.AST, path: str) -> None:
        for other in self.other_hms:
            if path == other or path.startswith(other + "."):
                self.add(node, HARNESS_IMPORT, f"`{path}` is the harness of another backend, but this run uses "
                                               f"{self.backend}: import `{self.hm}` (as harness) instead.")
                return
        if path in ("autoresearch.harness", "autoresearch"):
            what = f"`{path}` is the whole autoresearch package"
        else:
            what = f"`{path}` is internal to autoresearch"
        self.add(node, HARNESS_IMPORT, f"{what}: train.py may import only `import {self.hm} as harness` or public "
                                       "names from it, so the data, the clock and the score stay out of its reach.")

    def _module_import(self, node: ast.AST, path: str) -> None:
        root = path.split(".")[0]
        if root not in self.allowed:
            category = next((c for c, mods in _IMPORT_CATEGORIES.items() if root in mods), None)
            why = f": it {_IMPORT_WHY[category]}" if category else ""
            allowed = ", ".join(m for m in sorted(self.allowed) if m != "__future__")
            self.add(node, category or IMPORT, f"import of `{root}` is not allowed in train.py{why}; allowed "
                                               f"modules: {allowed}.")
            return
        parts = path.split(".")
        if root in _RESTRICTED and len(parts) > 1 and parts[1] not in _RESTRICTED[root]:
            self._restricted(node, root, parts[1])
            return
        self._blocked(node, path)

    def _restricted(self, node: ast.AST, module: str, attr: str) -> None:
        rule = IMPORT
        if module == "os":
            rule = _OS_RULES.get(attr, IMPORT)
        elif module == "sys" and attr in ("modules", "meta_path", "path_hooks", "path_importer_cache"):
            rule = DYNAMIC_CODE
        elif module == "sys" and (attr.startswith("_") or attr in ("settrace", "setprofile")):
            rule = INTROSPECTION
        elif module == "sys" and attr in ("path", "stdin"):
            rule = IMPORT
        elif module in ("gc", "inspect"):
            rule = INTROSPECTION
        elif module == "json":
            rule = FILE_READ if attr == "load" else FILE_WRITE if attr == "dump" else IMPORT
        self.add(node, rule, f"`{module}.{attr}` is not allowed in train.py: {_RESTRICTED_WHY[module]}.")

    def _blocked(self, node: ast.AST, path: str, receiver: frozenset[str] = frozenset()) -> None:
        for prefix, (rule, why) in _BLOCKED.items():
            if path == prefix or path.startswith(prefix + "."):
                if any(r == prefix or r.startswith(prefix + ".") for r in receiver):
                    return  # reported where the chain first reached it
                self.add(node, rule, f"`{prefix}` is not allowed in train.py: it {why}, and a training run only "
                                     "trains on the harness's batches and reports through H.finish.")
                return

    def _batches(self, node: ast.AST) -> None:
        self.add(node, DATA_SPLIT, "harness.batches(...) reads a data split directly, bypassing the session's token "
                                   "count and clock (and exposing the val/test splits); train only on "
                                   "H.train_batches(batch_size).")

    def on_name(self, node: ast.Name) -> None:
        name = node.id
        if name in _DISPATCH_METHODS:
            self._dispatch_method(node)
        if not isinstance(node.ctx, ast.Load):
            return
        if name in _MODULE_NAMES_BUILTINS:
            rule, message = _MODULE_NAMES_BUILTINS[name]
            self.add(node, rule, message)
            return
        parent = self.parent.get(node)
        called = isinstance(parent, ast.Call) and parent.func is node
        if self.is_builtin(name):
            if name in _DYNAMIC_BUILTINS:
                self.add(node, DYNAMIC_CODE, _DYNAMIC_BUILTINS[name])
                return
            if name in _REFLECTION_BUILTINS and not called:
                self.add(node, OBFUSCATION if name != "open" else FILE_READ,
                         f"`{name}` may only be called directly in train.py (not passed around or renamed), so the "
                         "check can see what it is used on.")
                return
        self._canonical_use(node)

    def on_attribute(self, node: ast.Attribute) -> None:
        self._attribute(node, node.value, node.attr)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._store(node)
        elif isinstance(node.ctx, ast.Load):
            self._canonical_use(node)

    def on_subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._store(node)

    def _attribute(self, node: ast.AST, receiver: ast.AST, attr: str) -> None:
        """Reading ``receiver.attr`` (also used for getattr/hasattr/setattr/delattr with literal names)."""
        recv = self.resolve(receiver)
        tracked = any(_is_tracked(c) for c in recv)
        what = f"{_src(receiver)}.{attr}"
        if tracked and attr.startswith("_"):
            self.add(node, HARNESS_PRIVATE, f"`{what}` is a private attribute of the harness; train.py may use only "
                                            "its public API (train_batches, keep_training, progress, check_loss, "
                                            "autocast, finish, config fields...).")
        elif self.hm in recv and attr not in self.public:
            self.add(node, HARNESS_PRIVATE, f"`{what}` is not a public name of {self.hm}; use only "
                                            f"{', '.join(sorted(self.public))}.")
        elif not tracked and not _selfish(receiver):
            if attr in self.private_names:
                self.add(node, HARNESS_PRIVATE, f"`{what}` names a private attribute of the harness session "
                                                "(its clock, counters or scoring); train.py may not touch it.")
            elif attr in _REFLECTIVE_DUNDERS and not self._own_setattr(node):
                self.add(node, INTROSPECTION, f"`{what}` is reflective access that can reach the harness's "
                                              "internals; use plain attributes (and type(x) for a class).")
        if attr in _ATTR_RULES:
            rule, why = _ATTR_RULES[attr]
            self.add(node, rule, f"`.{attr}` is not allowed in train.py: it {why}, and a training run touches no "
                                 "files or interpreter state outside the harness.")
        for c in recv:
            if not _is_module_path(c) or _is_tracked(c):
                continue
            if c in _RESTRICTED and attr not in _RESTRICTED[c]:
                self._restricted(node, c, attr)
            else:
                self._blocked(node, f"{c}.{attr}", receiver=recv)

    def _own_setattr(self, node: ast.AST) -> bool:
        """``object.__setattr__(self, ...)`` (frozen dataclasses, nn.Module internals) is fine."""
        parent = self.parent.get(node)
        return (isinstance(node, ast.Attribute) and node.attr in ("__setattr__", "__delattr__", "__getattribute__")
                and isinstance(node.value, ast.Name) and node.value.id in ("object", "type")
                and isinstance(parent, ast.Call) and parent.func is node and bool(parent.args)
                and _selfish(parent.args[0]))

    def _store(self, target: ast.AST, attr_name: str | None = None, receiver: ast.AST | None = None,
               at: ast.AST | None = None) -> None:
        """Assigning/deleting ``target`` (an Attribute or Subscript), or setattr(receiver, attr_name, ...)."""
        at = at or target
        if receiver is None:
            receiver = target.value  # type: ignore[attr-defined]
            attr_name = target.attr if isinstance(target, ast.Attribute) else None
        recv = self.resolve(receiver)
        what = f"{_src(receiver)}.{attr_name}" if attr_name else _src(target)
        if any(_is_tracked(c) for c in recv):
            if any(c.startswith(_SESSION) for c in recv):
                self.add(at, HARNESS_MUTATION, f"`{what}` changes the harness session, whose fields (clock, token "
                                               "count, config) are the harness's own bookkeeping; train.py may only "
                                               "read them.")
            else:
                self.add(at, HARNESS_MUTATION, f"changing `{what}` would monkeypatch the harness; train.py may only "
                                               "call its public functions.")
            return
        modules = [c for c in recv if _is_module_path(c)]
        if modules and "os.environ" not in recv:
            full = [f"{c}.{attr_name}." if attr_name else f"{c}.[]" for c in modules]
            if not all(any(f.startswith(p) for p in _CONFIG_PREFIXES) for f in full):
                self.add(at, MONKEYPATCH, f"assigning `{what}` modifies an imported module that the harness also uses "
                                          "to time and score the run; train.py may set only torch config flags "
                                          "(torch.backends.*, torch._dynamo.config.*, torch._inductor.config.*).")
                return
        if attr_name in _STATE_NAMES and not _selfish(receiver):
            self.add(at, HARNESS_MUTATION, f"`{what}` names a field of the harness session's bookkeeping "
                                           f"({attr_name}); train.py may not write it on any object.")

    def on_call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and self.is_builtin(f.id):
            if f.id == "open":
                self._open(node)
            elif f.id in ("getattr", "hasattr", "setattr", "delattr"):
                self._reflective_builtin(node, f.id)
            elif f.id == "vars":
                if not node.args or not _selfish(node.args[0]):
                    tracked = bool(node.args) and any(_is_tracked(c) for c in self.resolve(node.args[0]))
                    self.add(node, HARNESS_REFLECTION if tracked else INTROSPECTION,
                             "vars() exposes an object's internals (for the harness session: its clock and counters); "
                             "use its attributes directly.")
            elif f.id == "type":
                if len(node.args) == 1 and any(_is_tracked(c) for c in self.resolve(node.args[0])):
                    self.add(node, HARNESS_REFLECTION, "type() of a harness object gives its class, which train.py may "
                                                       "not subclass or patch; use the object's public API.")
                elif len(node.args) == 3:
                    self.add(node, DYNAMIC_CODE, "the three-argument type() builds a class at run time; write a "
                                                 "class statement instead.")
        funcs = self.resolve(f)
        if any(c in {f"autoresearch.harness.{b}.start" for b in BACKENDS} for c in funcs):
            self.start_calls.append(node)
        if (isinstance(f, ast.Attribute) and f.attr == "finish") or any(c == f"{_SESSION}.finish" for c in funcs):
            self.finish_calls += 1
        if (isinstance(f, ast.Attribute) and f.attr == "keep_training") or \
                any(c == f"{_SESSION}.keep_training" for c in funcs):
            self.keep_calls += 1
        args = list(node.args) + [kw.value for kw in node.keywords]
        if funcs & {"copy.copy", "copy.deepcopy"} and node.args and \
                any(_is_tracked(c) for c in self.resolve(node.args[0])):
            self.add(node, HARNESS_REFLECTION, "copying a harness object gives a session (or module) whose clock and "
                                               "counters train.py could then change; use the one harness.start() "
                                               "returned.")
        for c in funcs:
            if c.startswith("autoresearch.harness.") and c.rsplit(".", 1)[-1] in _SESSION_CLASSES:
                self.add(node, HARNESS_REFLECTION, f"`{_src(f)}(...)` builds a second session by hand; only "
                                                   "harness.start() creates the run's session.")
                break
            if c == f"{self.hm}.evaluate_bpb":
                self._evaluate_split(node)
            if c in ("operator.attrgetter", "operator.methodcaller"):
                for a in node.args[:1] if c.endswith("methodcaller") else node.args:
                    name = self.fold(a)
                    if name is None:
                        self.add(node, OBFUSCATION, f"`{c}` with a computed name hides which attribute is used; "
                                                    "write the attribute access directly.")
        if isinstance(f, ast.Attribute) and f.attr in _MUTATORS and \
                any(_is_tracked(c) for c in self.resolve(f.value)):
            self.add(node, HARNESS_MUTATION, f"`{_src(f)}(...)` changes the harness's state (its config or "
                                             "bookkeeping); train.py may only read it.")
        if isinstance(f, ast.Attribute) and f.attr in ("__setattr__", "__delattr__") and node.args and \
                any(_is_tracked(c) for c in self.resolve(node.args[0])):
            self.add(node, HARNESS_MUTATION, f"`{_src(f)}(...)` on a harness object changes the harness's "
                                             "bookkeeping; train.py may only read it.")
        if (isinstance(f, ast.Name) and f.id == "open") or any(self._file_api(c) for c in funcs):
            self._paths(node, args)

    @staticmethod
    def _file_api(c: str) -> bool:
        """Functions whose string arguments are paths (the engine's records are off limits there)."""
        if c.startswith(("os.environ", "os.getenv")):
            return False
        if c.split(".")[0] in _FILE_API_ROOTS:
            return True
        return any(c == p or c.startswith(p + ".") for p in _BLOCKED)

    def _reflective_builtin(self, node: ast.Call, name: str) -> None:
        if len(node.args) < 2:
            return
        obj, attr = node.args[0], self.fold(node.args[1])
        recv = self.resolve(obj)
        tracked = any(_is_tracked(c) for c in recv)
        if attr is None:
            if tracked:
                self.add(node, HARNESS_REFLECTION, f"{name}() with a computed name on a harness object can reach its "
                                                   "private state; use its public attributes by name.")
            elif any(_is_module_path(c) for c in recv):
                self.add(node, OBFUSCATION, f"{name}() with a computed name on a module hides which function is "
                                            f"used; write the attribute directly (e.g. `{_src(obj)}.gelu`).")
            elif name in ("setattr", "delattr") and not _selfish(obj):
                self.add(node, OBFUSCATION, f"{name}() with a computed name hides what is changed; assign the "
                                            "attribute directly.")
            return
        self._attribute(node, obj, attr)
        if name in ("setattr", "delattr"):
            self._store(node, attr_name=attr, receiver=obj, at=node)

    def _open(self, node: ast.Call) -> None:
        if not node.args:
            self.add(node, FILE_READ, "open() may only read train.py's own source (open(__file__)); the data comes "
                                      "from H.train_batches.")
            return
        mode_node = node.args[1] if len(node.args) > 1 else next(
            (kw.value for kw in node.keywords if kw.arg == "mode"), None)
        mode = "r" if mode_node is None else self.fold(mode_node)
        if mode is None or any(ch in mode for ch in "wax+"):
            self.add(node, FILE_WRITE, "train.py may not write files (open with w/a/x/+ or a computed mode): the "
                                       "harness alone records the run's results.")
        elif not (isinstance(node.args[0], ast.Name) and node.args[0].id == "__file__"):
            self.add(node, FILE_READ, "train.py may not read files other than its own source (open(__file__)): the "
                                      "training data comes only from H.train_batches.")

    def _paths(self, node: ast.Call, args: list[ast.expr]) -> None:
        for arg in args:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    s = sub.value
                    frag = next((p for p in _PATH_FRAGMENTS if p in s.lower()), None)
                    if frag is None and _PARENT_DIR.search(s):
                        frag = ".."
                    if frag is not None:
                        self.add(node, FORBIDDEN_PATH, f"the path {s[:60]!r} points at the engine's records or outside "
                                                       f"the run directory ({frag!r}); train.py may not touch them.")

    def _evaluate_split(self, node: ast.Call) -> None:
        split = next((kw.value for kw in node.keywords if kw.arg == "split"), None)
        if split is not None and self.fold(split) != "val":
            self.add(node, DATA_SPLIT, "evaluate_bpb may only be called on the val split from train.py: the test "
                                       "split is held out from the agent and the train split is scored by nothing.")

    def _canonical_use(self, node: ast.AST) -> None:
        canon = self.resolve(node)
        if not canon:
            return
        if "os.environ" in canon:
            self._environ(node)
        if "os.getenv" in canon:
            parent = self.parent.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node and parent.args):
                self.add(node, ENVIRONMENT, "os.getenv may only be called directly with a literal variable name, so "
                                            "the check can see that no AUTORESEARCH_* variable is read.")
            else:
                self._env_key(parent.args[0], node)
        if f"{self.hm}.batches" in canon:
            self._batches(node)

    def _environ(self, node: ast.AST) -> None:
        parent = self.parent.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            self._env_key(parent.slice, parent)
            return
        if isinstance(parent, ast.Compare) and node in parent.comparators and \
                all(isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops):
            self._env_key(parent.left, parent)
            return
        if isinstance(parent, ast.Attribute) and parent.value is node and parent.attr in ("get", "setdefault", "pop"):
            call = self.parent.get(parent)
            if isinstance(call, ast.Call) and call.func is parent and call.args:
                self._env_key(call.args[0], call)
                return
        self.add(node, ENVIRONMENT, "os.environ may only be used as os.environ[\"NAME\"], os.environ.get(\"NAME\") "
                                    "or \"NAME\" in os.environ with a literal name: reading or changing it wholesale "
                                    "would reach the engine's AUTORESEARCH_* variables.")

    def _env_key(self, key: ast.AST, at: ast.AST) -> None:
        name = self.fold(key)
        if name is None:
            self.add(at, ENVIRONMENT, "environment variable names must be literal strings in train.py, so the check "
                                      "can see that no AUTORESEARCH_* variable is read or changed.")
        elif "autoresearch_" in name.lower():
            self.add(at, ENVIRONMENT, f"`{name}` is one of the engine's AUTORESEARCH_* variables, which tell the "
                                      "harness where its config and metrics live; train.py may not read or set them.")

    def on_constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str):
            return
        s = node.value
        if "autoresearch_" in s.lower():
            self._ar_string(node)
        if _IDENT_PATH.match(s) and any(part in self.private_names for part in s.split(".")):
            self.add(node, HARNESS_PRIVATE, f"the string {s!r} names a private attribute of the harness session; "
                                            "train.py may not reach the harness's internals, by name or otherwise.")

    def on_string_expression(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr in ("upper", "lower", "join", "replace", "casefold",
                                                                "swapcase", "title", "capitalize", "format",
                                                                "strip")):
                return
        elif isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Add, ast.Mod)):
            return
        elif isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            return
        folded = self.fold(node, partial=True)
        if folded and "autoresearch_" in folded.lower():
            self._ar_string(node)
        elif folded and _UNKNOWN not in folded and _IDENT_PATH.match(folded) and \
                any(part in self.private_names for part in folded.split(".")):
            self.add(node, HARNESS_PRIVATE, f"the string {folded!r} names a private attribute of the harness "
                                            "session; train.py may not reach the harness's internals.")

    def _ar_string(self, node: ast.AST) -> None:
        self.add(node, ENVIRONMENT, "a string here names an AUTORESEARCH_* variable, which belongs to the engine (it "
                                    "tells the harness where its config and metrics live); train.py may not "
                                    "mention it.")

    def on_class(self, node: ast.ClassDef) -> None:
        for base in node.bases + [kw.value for kw in node.keywords]:
            canon = self.resolve(base)
            if any(_is_tracked(c) for c in canon):
                self.add(base, HARNESS_REFLECTION, f"class {node.name} derives from `{_src(base)}`: subclassing the "
                                                   "harness could replace its clock or scoring; use the session "
                                                   "harness.start() returns.")
            elif canon & {"torch.Tensor", "torch._tensor.Tensor", "mlx.core.array"}:
                self.add(base, DISPATCH, f"class {node.name} subclasses a tensor type, which can change how the "
                                         "harness computes the loss on the model's logits; return plain tensors.")

    def on_function(self, node: ast.AST) -> None:
        if node.name in _DISPATCH_METHODS:  # type: ignore[attr-defined]
            self._dispatch_method(node)

    def _dispatch_method(self, node: ast.AST) -> None:
        self.add(node, DISPATCH, "__torch_function__/__torch_dispatch__ intercept torch operations, including the "
                                 "harness's loss computation on the logits; train.py may not define them.")

    HANDLERS = {
        ast.Import: on_import,
        ast.ImportFrom: on_import_from,
        ast.Name: on_name,
        ast.Attribute: on_attribute,
        ast.Subscript: lambda self, node: (self.on_subscript(node), self.on_string_expression(node)),
        ast.Call: lambda self, node: (self.on_call(node), self.on_string_expression(node)),
        ast.Constant: on_constant,
        ast.BinOp: on_string_expression,
        ast.JoinedStr: on_string_expression,
        ast.ClassDef: on_class,
        ast.FunctionDef: on_function,
        ast.AsyncFunctionDef: on_function,
    }

    # -- the session protocol -----------------------------------------------------------------------------
    def check_session(self) -> None:
        last = max((getattr(n, "end_lineno", 1) or 1 for n in self.tree.body), default=1)
        if not self.start_calls:
            self.add(None, SESSION, f"train.py never calls harness.start(): `import {self.hm} as harness` and "
                                    "`H = harness.start()` once, because the session owns the data, the clock and "
                                    "the score.")
        for i, call in enumerate(self.start_calls):
            if i > 0:
                self.add(call, SESSION, "harness.start() is called more than once: a run has exactly one session, so "
                                        "the clock and the score cannot be split across sessions.")
            if call.args or call.keywords:
                self.add(call, SESSION, "harness.start() must be called without arguments: the engine provides the "
                                        "run's config and train.py may not choose another.")
            if self._in_loop(call):
                self.add(call, SESSION, "harness.start() is inside a loop or comprehension: call it once, before "
                                        "training.")
        if not self.keep_calls:
            self.add(None, SESSION, line=last, message=
                     "train.py never calls H.keep_training(): the training loop must be `while H.keep_training():` "
                     "so the harness measures the time budget.")
        if not self.finish_calls:
            self.add(None, SESSION, line=last, message=
                     "train.py never calls H.finish(model): without it the harness does not evaluate the model and "
                     "the run has no score.")

    def _in_loop(self, node: ast.AST) -> bool:
        p = self.parent.get(node)
        while p is not None and not isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module)):
            if isinstance(p, (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
                              ast.GeneratorExp)):
                return True
            p = self.parent.get(p)
        return False
