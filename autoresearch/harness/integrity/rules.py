"""The integrity check's rules as data: the rule ids, what each one means, and the tables that say what
train.py may and may not use (modules, module attributes, builtins, dunders, paths).

The checker (``checker.py`` and the rule families it mixes in) looks names up here; changing what is allowed
means changing a table here, not the code that walks the script.
"""

from __future__ import annotations

import re

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

SESSION_NAME = "@session"  # canonical name of the object harness.start() returns (see names.py)

COMMON_MODULES = (
    "__future__", "abc", "bisect", "cmath", "collections", "contextlib", "copy", "dataclasses", "enum",
    "functools", "gc", "heapq", "inspect", "itertools", "json", "math", "numbers", "numpy", "operator", "os",
    "random", "re", "statistics", "sys", "time", "typing", "warnings",
)
BACKEND_MODULES = {"torch": ("torch", "triton"), "mlx": ("mlx",)}

# module -> the only attributes train.py may use
RESTRICTED = {
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
RESTRICTED_WHY = {
    "os": "only os.environ[\"NAME\"] / os.environ.get(\"NAME\") / os.getenv(\"NAME\"), os.cpu_count, "
          "os.sched_getaffinity, os.getpid and os.path are allowed",
    "sys": "only sys.stdout/stderr, version and platform facts, argv, exit and the recursion limit are allowed",
    "gc": "only collect/enable/disable/freeze and the thresholds are allowed, not walks over live objects",
    "inspect": "only signature and the is* predicates are allowed, not frames, members or sources",
    "json": "only json.dumps/json.loads are allowed (no file I/O)",
}
OS_RULES = {
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
BLOCKED = {
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
ATTR_RULES = {
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
REFLECTIVE_DUNDERS = frozenset({
    "__dict__", "__class__", "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__",
    "__bases__", "__base__", "__mro__", "__getattribute__", "__getattr__", "__setattr__", "__delattr__",
    "__self__", "__func__", "__reduce__", "__reduce_ex__", "__loader__", "__spec__", "__import__",
    "__defaults__", "__kwdefaults__",
})
# the only dunder attributes train.py may use: constructors (super().__init__(), nn.Module.__init__(self)), names
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__qualname__", "__doc__", "__version__"})
DISPATCH_METHODS = frozenset({"__torch_function__", "__torch_dispatch__"})
MUTATORS = frozenset({"update", "clear", "pop", "popitem", "setdefault", "append", "extend", "insert", "remove",
                       "sort", "reverse", "add", "discard", "__setitem__", "__delitem__"})
# session fields that name the harness's bookkeeping: writing them is reported on any object but self
STATE_NAMES = frozenset({"training_seconds", "uncounted_seconds", "time_budget", "t_start", "uncounted_steps",
                          "budget_slack", "max_steps", "eval_tokens", "data_dir"})
# module attributes that may be assigned (configuration namespaces)
CONFIG_PREFIXES = ("torch.backends.", "torch._dynamo.config.", "torch._inductor.config.",
                    "torch._functorch.config.")
SESSION_CLASSES = frozenset({"Session", "TorchSession", "MLXSession"})
FILE_API_ROOTS = frozenset({"os", "json", "pickle", "shutil", "pathlib", "io", "glob", "autoresearch", SESSION_NAME})
PATH_FRAGMENTS = (".autoresearch", "metrics", "harness.json", "events.jsonl", "results.tsv")
PARENT_DIR = re.compile(r"(^|[/\\])\.\.([/\\]|$)")
IDENT_PATH = re.compile(r"^[A-Za-z_][\w.]*$")

# builtins and what using them means
DYNAMIC_BUILTINS = {
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
REFLECTION_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr", "vars", "open"})
MODULE_NAMES_BUILTINS = {
    "__builtins__": (DYNAMIC_CODE, "`__builtins__` gives access to every builtin, including exec and open, "
                                   "behind this check's back; use builtins directly."),
    "__loader__": (FILE_READ, "`__loader__` can read arbitrary files; train.py reads nothing but its data "
                              "from the harness."),
    "__spec__": (INTROSPECTION, "`__spec__` exposes the import machinery; train.py has no use for it."),
}

# why a module outside the allow-list is not allowed, by category
IMPORT_CATEGORIES = {
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
IMPORT_WHY = {
    PROCESS: "starts or controls processes, threads or signals, outside what the harness measures",
    NETWORK: "reaches the network, and a training run gets its data only from the harness",
    DYNAMIC_CODE: "loads, builds or inspects code at run time where this check cannot see it",
    FILE_READ: "works with files, and train.py reads and writes none because its data comes from H.train_batches",
}


def allowed_modules(backend: str = "torch") -> tuple[str, ...]:
    """Top-level modules train.py may import for ``backend`` (besides the harness)."""
    return tuple(sorted(COMMON_MODULES + BACKEND_MODULES[backend]))
