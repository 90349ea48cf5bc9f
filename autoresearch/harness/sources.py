"""Where the text comes from: the built-in stdlib corpus, local files, and datasets on the Hugging Face hub.

A :class:`Source` is a list of :class:`Unit` (a file, a hub shard) read in a fixed order. Each unit has a
stable id (its relative path or file name) that decides its split (see ``splits.py``), and yields its
documents (``str``) in a deterministic order. Reading a source twice gives the same documents.

Dataset names are in :data:`DATASETS`; :func:`resolve_dataset` turns a name or a path into a
:class:`DatasetRef`, and :func:`open_source` into a readable :class:`Source` (downloading if needed).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..progress import NullProgress, Progress
from .manifest import DataError
from .splits import Role

MAX_DOC_CHARS = 6000
EOT = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")
_READ_CHARS = 1 << 20  # streaming read size for big .txt files
_EOT_SNIFF_CHARS = 8 << 20  # a .txt is "<|endoftext|>-separated" if this much of its start contains one

# A blank line followed by a line that starts at column 0: a top-level boundary in Python source.
PY_BOUNDARY = re.compile(r"\n[ \t\r\f]*\n(?=\S)")
# A blank line followed by a non-blank line: a paragraph boundary in prose.
PARAGRAPH_BOUNDARY = re.compile(r"\n[ \t\r\f]*\n(?=[ \t]*\S)")


# -- chunking --------------------------------------------------------------------------------------------


def chunk_text(text: str, max_chars: int = MAX_DOC_CHARS, boundary: re.Pattern[str] = PY_BOUNDARY) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters whose concatenation is ``text``.

    Cuts are made at ``boundary`` matches (just before the line after the blank line) and blocks are
    packed greedily; a block longer than ``max_chars`` is cut at line ends, and a line longer than that
    at ``max_chars`` characters. Whitespace-only pieces are kept (callers drop them if they want).
    """
    if len(text) <= max_chars:
        return [text] if text else []
    cuts = [m.end() for m in boundary.finditer(text)]
    atoms: list[str] = []
    start = 0
    for end in [*cuts, len(text)]:
        block = text[start:end]
        start = end
        if len(block) <= max_chars:
            atoms.append(block)
            continue
        for line in block.splitlines(keepends=True):
            if len(line) <= max_chars:
                atoms.append(line)
            else:
                atoms.extend(line[i : i + max_chars] for i in range(0, len(line), max_chars))
    out: list[str] = []
    current: list[str] = []
    size = 0
    for atom in atoms:
        if size + len(atom) > max_chars and current:
            out.append("".join(current))
            current, size = [], 0
        current.append(atom)
        size += len(atom)
    if current:
        out.append("".join(current))
    return out


def _clean(text: str) -> str:
    """Make text encodable as UTF-8 (lone surrogates, as JSON may carry, become U+FFFD)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


# -- units and sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One readable piece of a source (a file): a stable id, a role for splitting and a document reader."""

    id: str
    size: int  # bytes on disk (used for --max-bytes selection and progress)
    read: Callable[[], Iterator[str]]
    role: Role = "auto"


@dataclass
class Source:
    name: str  # the manifest's dataset name: "stdlib", "tinystories", "local:<basename>"
    units: list[Unit]
    provenance: dict[str, Any] = field(default_factory=dict)
    max_bytes: int | None = None  # documents stop after this much text (train and held-out counted apart)
    heldout_max_bytes: int | None = None

    def documents(self, units: list[Unit] | None = None) -> Iterator[tuple[Unit, int, str]]:
        """Yield (unit, index within unit, text), honouring the byte caps. Whitespace-only documents are skipped."""
        used = {"main": 0, "heldout": 0}
        for unit in self.units if units is None else units:
            pool = "heldout" if unit.role == "heldout" else "main"
            cap = self.heldout_max_bytes if pool == "heldout" else self.max_bytes
            if pool == "heldout" and self.max_bytes is not None:
                cap = self.max_bytes if cap is None else min(cap, self.max_bytes)
            index = 0
            for text in unit.read():
                if not text.strip():
                    continue
                if cap is not None and used[pool] >= cap:
                    break
                text = _clean(text)
                used[pool] += len(text.encode("utf-8"))
                yield unit, index, text
                index += 1


def _select(units: list[Unit], max_bytes: int | None) -> list[Unit]:
    """The first units whose sizes add up to at most ``max_bytes`` (at least one)."""
    if max_bytes is None:
        return units
    out: list[Unit] = []
    total = 0
    for u in units:
        if out and total + u.size > max_bytes:
            break
        out.append(u)
        total += u.size
    return out


# -- stdlib ----------------------------------------------------------------------------------------------


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_source(max_bytes: int | None = None, *, max_doc_chars: int = MAX_DOC_CHARS) -> Source:
    """The .py files of this Python's standard library (not site-packages), sorted by relative path.

    Files that are not valid UTF-8 are skipped and counted. Files are chunked at top-level boundaries into
    documents of at most ``max_doc_chars`` characters. ``max_bytes`` keeps the first files (in path order)
    whose sizes add up to at most that many bytes.
    """
    root = stdlib_root()
    paths = sorted(
        (p for p in root.rglob("*.py") if not {"site-packages", "dist-packages"} & set(p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    units: list[Unit] = []
    skipped: list[str] = []
    listing = hashlib.sha256()
    total = 0
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except (UnicodeDecodeError, OSError):
            skipped.append(rel)
            continue
        if max_bytes is not None and units and total + len(data) > max_bytes:
            break
        total += len(data)
        listing.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        units.append(Unit(rel, len(data), _py_reader(path, max_doc_chars)))
    if not units:
        raise DataError(f"No readable .py files under {root}; use a local path (`--dataset ./corpus.txt`) instead.")
    provenance = {
        "kind": "stdlib",
        "python_version": sys.version.split()[0],
        "python_implementation": sys.implementation.name,
        "stdlib_path": str(root),
        "files": len(units),
        "bytes": total,
        "files_sha256": listing.hexdigest(),  # sha256 over "relpath\0sha256(file)\n" of every file used
        "skipped_not_utf8": len(skipped),
        "skipped_files": skipped,
        "max_doc_chars": max_doc_chars,
    }
    return Source("stdlib", units, provenance)


def _py_reader(path: Path, max_doc_chars: int) -> Callable[[], Iterator[str]]:
    def read() -> Iterator[str]:
        text = path.read_bytes().decode("utf-8")
        yield from chunk_text(text, max_doc_chars, PY_BOUNDARY)

    return read


# -- local files -----------------------------------------------------------------------------------------


def local_source(path: Path, max_bytes: int | None = None, *, max_doc_chars: int = MAX_DOC_CHARS) -> Source:
    """A .txt / .jsonl / .parquet file, or a folder of them (recursive, sorted; hidden entries skipped)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist. Give a .txt, .jsonl or .parquet file, or a folder of them.")
    if path.is_dir():
        files = _list_folder(path)
        base = path
    else:
        if path.suffix.lower() not in TEXT_SUFFIXES:
            raise DataError(
                f"{path} is not a supported file: use a UTF-8 .txt file, a .jsonl file with a \"text\" field "
                f"per line, a .parquet file with a \"text\" column, or a folder of them."
            )
        files = [path]
        base = path.parent
    units: list[Unit] = []
    for f in files:
        size = f.stat().st_size
        if size == 0:
            continue
        _sniff(f)
        rel = f.relative_to(base).as_posix()
        units.append(Unit(rel, size, _file_reader(f, max_doc_chars)))
    if not units:
        what = "folder only holds empty files" if path.is_dir() else "file is empty"
        raise DataError(f"{path}: the {what}. Give a file or folder with some text in it.")
    units = _select(units, max_bytes)
    described = [{"file": u.id, "size": u.size, "sha256": _sha256(base / u.id)} for u in units]
    provenance = {
        "kind": "local",
        "path": str(path.resolve()),
        "files": described,
        "max_doc_chars": max_doc_chars,
    }
    absolute = path.resolve()
    name = f"local:{_safe(absolute.stem if absolute.is_file() else absolute.name)}"
    return Source(name, units, provenance, max_bytes)


def _list_folder(folder: Path) -> list[Path]:
    found: list[Path] = []
    others = 0
    for p in sorted(folder.rglob("*"), key=lambda q: q.relative_to(folder).as_posix()):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() in TEXT_SUFFIXES:
            found.append(p)
        else:
            others += 1
    if not found:
        raise DataError(
            f"{folder} has no .txt, .jsonl or .parquet files (it has {others} other file(s)). Put UTF-8 text "
            f"in .txt files, JSON lines with a \"text\" field in .jsonl files, or a \"text\" column in "
            f".parquet files, or point --dataset at a single such file."
        )
    return found


def _sniff(path: Path) -> None:
    """Refuse obviously wrong files early (before any work is done)."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if path.suffix.lower() == ".parquet":
        if not head.startswith(b"PAR1"):
            raise DataError(f"{path} is not a Parquet file (no PAR1 magic). Re-export it, or convert it to .jsonl.")
        return
    if b"\x00" in head:
        raise DataError(
            f"{path} looks binary (it contains NUL bytes), not UTF-8 text. Convert it to UTF-8 text, or remove "
            f"it from the folder."
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a multibyte character cut at the end of the sample
            raise _not_utf8(path, e, f"byte {e.start}") from e


def _not_utf8(path: Path, e: UnicodeDecodeError, where: str = "") -> DataError:
    """``where`` says where the bad bytes are ("line 7", "byte 123"), when known."""
    return DataError(
        f"{path} is not UTF-8 text ({e.reason}{' at ' + where if where else ''}). Convert it to UTF-8 "
        f"(e.g. `iconv -f latin1 -t utf-8`), or remove it."
    )


def _file_reader(path: Path, max_doc_chars: int, errors: str = "strict") -> Callable[[], Iterator[str]]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return lambda: read_txt(path, max_doc_chars, errors)
    if suffix == ".jsonl":
        return lambda: read_jsonl(path)
    return lambda: read_parquet(path)


def read_txt(path: Path, max_doc_chars: int = MAX_DOC_CHARS, errors: str = "strict") -> Iterator[str]:
    """Documents of a .txt file: split on ``<|endoftext|>`` if its start contains one, else paragraph chunks.

    Streams the file, so multi-GB files are fine. ``errors="replace"`` decodes bad bytes leniently.
    """
    try:
        with open(path, encoding="utf-8", errors=errors, newline="") as f:
            first = f.read(_EOT_SNIFF_CHARS)
            eot = EOT in first
            pending = ""
            for block in itertools.chain([first], iter(lambda: f.read(_READ_CHARS), "")):
                if "\x00" in block:
                    raise DataError(f"{path} contains NUL bytes: it is binary, not UTF-8 text. Convert or remove it.")
                pending += block
                if eot:
                    parts = pending.split(EOT)
                    pending = parts.pop()
                    yield from (doc for doc in (p.strip() for p in parts) if doc)
                else:
                    cut = _last_boundary(pending)
                    region, pending = pending[:cut], pending[cut:]
                    yield from chunk_text(region, max_doc_chars, PARAGRAPH_BOUNDARY)
            if eot:
                if pending.strip():
                    yield pending.strip()
            else:
                yield from chunk_text(pending, max_doc_chars, PARAGRAPH_BOUNDARY)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from e


def _last_boundary(text: str) -> int:
    """Where to cut a streamed region: after the last paragraph boundary (0 if none and still small)."""
    last = 0
    for m in PARAGRAPH_BOUNDARY.finditer(text, max(0, len(text) - 4 * _READ_CHARS)):
        last = m.end()
    if last == 0 and len(text) > 8 * _READ_CHARS:
        last = text.rfind("\n", 0, len(text) - 1) + 1 or len(text)
    return last


def read_jsonl(path: Path) -> Iterator[str]:
    """The "text" field of every JSON line (blank lines are skipped)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, e, f"line {lineno}") from e
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(
                    f"{path} line {lineno} is not valid JSON ({e}). Each line must be one JSON object."
                ) from e
            if not isinstance(record, dict) or "text" not in record:
                raise DataError(f'{path} line {lineno} has no "text" field. Each line must be like {{"text": "..."}}.')
            text = record["text"]
            if not isinstance(text, str):
                raise DataError(f'{path} line {lineno}: "text" must be a string, not {type(text).__name__}.')
            yield text


def read_parquet(path: Path) -> Iterator[str]:
    """The "text" column, one row group at a time (so huge files are never loaded at once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path} is not a readable Parquet file ({e}).") from e
    names = pf.schema_arrow.names
    if "text" not in names:
        raise DataError(f'{path} has no "text" column (columns: {", ".join(names)}). Rename the text column to "text".')
    kind = pf.schema_arrow.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f'{path}: the "text" column has type {kind}; it must hold strings.')
    for i in range(pf.num_row_groups):
        for text in pf.read_row_group(i, columns=["text"]).column(0).to_pylist():
            if text:
                yield text


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "data"


# -- hub datasets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubDataset:
    """Which files of which hub repo make a dataset, and how to read them."""

    repo: str
    format: Literal["txt", "parquet"]
    train: tuple[str, ...] = ()  # fixed training files ...
    train_pattern: str | None = None  # ... or a pattern numbered 0, 1, ... (``shards`` of them)
    default_shards: int = 0
    heldout: tuple[str, ...] = ()  # files shared between val and test, by document
    heldout_max_bytes: int | None = None
    revision: str = "main"
    sha256: tuple[tuple[str, str], ...] = ()  # pinned checksums, (file, sha256)

    def train_files(self, shards: int | None = None) -> list[str]:
        if self.train_pattern is None:
            return list(self.train)
        n = self.default_shards if shards is None else shards
        if n < 1:
            raise DataError(f"--shards must be at least 1 (got {n}).")
        return [self.train_pattern.format(i) for i in range(n)]


HUB_DATASETS: dict[str, HubDataset] = {
    "tinystories": HubDataset(
        repo="roneneldan/TinyStories",
        format="txt",
        train=("TinyStoriesV2-GPT4-train.txt",),
        heldout=("TinyStoriesV2-GPT4-valid.txt",),
    ),
    "climbmix": HubDataset(
        repo="karpathy/climbmix-400b-shuffle",
        format="parquet",
        train_pattern="shard_{:05d}.parquet",
        default_shards=8,
        heldout=("shard_06542.parquet",),  # the last shard, as upstream autoresearch uses for validation
        heldout_max_bytes=64_000_000,  # val + test together; evaluation only reads a fixed number of tokens
    ),
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    kind: Literal["stdlib", "hub"]


DATASETS: dict[str, DatasetInfo] = {
    "stdlib": DatasetInfo(
        "stdlib", "Python standard library source of this machine (~30 MB, no download, works offline)", "stdlib"
    ),
    "tinystories": DatasetInfo(
        "tinystories", "TinyStories V2 (GPT-4 stories, ~2 GB download from the Hugging Face hub)", "hub"
    ),
    "climbmix": DatasetInfo(
        "climbmix",
        "ClimbMix 400B shuffle, upstream autoresearch's data (8 parquet shards by default + 1 val shard)",
        "hub",
    ),
}


@dataclass(frozen=True)
class DatasetRef:
    """A resolved ``--dataset`` argument."""

    name: str  # the manifest's dataset name
    dir_stem: str  # directory name before "-v<vocab>"
    path: Path | None = None  # for local data
    info: DatasetInfo | None = None  # for named datasets


def _looks_like_path(text: str) -> bool:
    if any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~")):
        return True
    return Path(text).suffix.lower() in TEXT_SUFFIXES


def resolve_dataset(name_or_path: str | Path) -> DatasetRef:
    """A dataset name from :data:`DATASETS`, or an existing local path; anything else is a DataError.

    A name wins over a file or folder of the same name in the current directory; write ``./name`` for the path.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in DATASETS and not _looks_like_path(text):
        return DatasetRef(text, text, info=DATASETS[text])
    path = Path(text).expanduser()
    if path.exists():
        absolute = path.resolve()
        base = _safe(absolute.stem if absolute.is_file() else absolute.name)
        short = hashlib.sha256(str(absolute).encode("utf-8")).hexdigest()[:8]
        return DatasetRef(f"local:{base}", f"local-{base}-{short}", path=absolute)
    choices = "\n".join(f"  {d.name:<12} {d.description}" for d in DATASETS.values())
    raise DataError(
        f"Unknown dataset {text!r} (and no file or folder of that name exists). Choose one of:\n{choices}\n"
        f"or give a local path: a UTF-8 .txt file, a .jsonl file with a \"text\" field, a .parquet file with "
        f"a \"text\" column, or a folder of them."
    )


def open_source(
    ref: DatasetRef,
    *,
    max_bytes: int | None = None,
    shards: int | None = None,
    progress: Progress = NullProgress(),
) -> Source:
    """A readable Source for a resolved dataset; hub datasets are downloaded first (resumable, cached)."""
    if ref.path is not None:
        return local_source(ref.path, max_bytes)
    if ref.name == "stdlib":
        return stdlib_source(max_bytes)
    return hub_source(ref.name, shards=shards, max_bytes=max_bytes, progress=progress)


def hub_source(
    name: str,
    *,
    shards: int | None = None,
    max_bytes: int | None = None,
    progress: Progress = NullProgress(),
    max_doc_chars: int = MAX_DOC_CHARS,
) -> Source:
    """Download (or reuse) the files of a hub dataset and read them as train / held-out units."""
    from .download import hub_download, hub_url

    spec = HUB_DATASETS[name]
    pinned = dict(spec.sha256)
    wanted: list[tuple[str, Role]] = [(f, "train") for f in spec.train_files(shards)]
    wanted += [(f, "heldout") for f in spec.heldout]
    units: list[Unit] = []
    files: list[dict[str, Any]] = []
    for filename, role in wanted:
        got = hub_download(
            spec.repo,
            filename,
            dataset=name,
            revision=spec.revision,
            progress=progress,
            expected_sha256=pinned.get(filename),
        )
        files.append(
            {
                "file": filename,
                "role": role,
                "size": got.size,
                "sha256": got.sha256,
                "url": hub_url(spec.repo, filename, spec.revision),
            }
        )
        if spec.format == "txt":
            reader = _bind_txt(got.path, max_doc_chars)
        else:
            reader = _bind_parquet(got.path)
        units.append(Unit(filename, got.size, reader, role))
    provenance = {
        "kind": "hub",
        "repo": spec.repo,
        "revision": spec.revision,
        "files": files,
        "heldout_max_bytes": spec.heldout_max_bytes,
        "max_doc_chars": max_doc_chars if spec.format == "txt" else None,
    }
    return Source(name, units, provenance, max_bytes, spec.heldout_max_bytes)


def _bind_txt(path: Path, max_doc_chars: int) -> Callable[[], Iterator[str]]:
    return lambda: read_txt(path, max_doc_chars, errors="replace")


def _bind_parquet(path: Path) -> Callable[[], Iterator[str]]:
    return lambda: read_parquet(path)


__all__ = [
    "DATASETS",
    "EOT",
    "HUB_DATASETS",
    "DatasetInfo",
    "DatasetRef",
    "HubDataset",
    "MAX_DOC_CHARS",
    "PARAGRAPH_BOUNDARY",
    "PY_BOUNDARY",
    "Source",
    "Unit",
    "chunk_text",
    "hub_source",
    "local_source",
    "open_source",
    "read_jsonl",
    "read_parquet",
    "read_txt",
    "resolve_dataset",
    "stdlib_source",
]
