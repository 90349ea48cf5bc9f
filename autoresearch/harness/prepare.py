"""``autoresearch prepare``: turn a text source into verified token shards (see ``manifest.py`` for the format).

Steps: read (or download) the source -> assign splits per unit / document (``splits.py``) -> train the
tokenizer on the train split (capped) -> tokenize everything in streamed batches -> write shards,
``tokenizer.json``, ``token_bytes.npy`` -> statistics -> the manifest, last.

Everything is built in a hidden temporary directory beside the final one and renamed into place at the
end, so an interrupted prepare never leaves a directory that looks complete. A complete dataset is
reused unless ``force`` is set or it was prepared with different options.

``manifest.stats`` holds::

    splits: {train|val|test: {documents, bytes, tokens, bytes_per_token}}   tokens include one BOS per
                                                                          document; bytes_per_token and
                                                                          bytes exclude BOS (0 bytes)
    bytes_per_token     of the train split
    unigram_bpb         bits per byte of the val split under a unigram model of train token counts
                        (add-one smoothing, BOS excluded): a floor any trained model must beat
    tokenizer_train_bytes
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import data_root
from ..progress import NullProgress, Progress
from .manifest import (
    MANIFEST_NAME,
    SPLITS,
    TOKEN_BYTES_NAME,
    TOKENIZER_NAME,
    DataError,
    Manifest,
    ShardInfo,
    read_manifest,
    sha256_file,
    shard_dtype,
)
from .sources import HUB_DATASETS, DatasetRef, Source, open_source, resolve_dataset
from .splits import TEST_FRACTION, VAL_FRACTION, SplitPlan, plan_splits
from .tokenizer import (
    SPLIT_PATTERN,
    bos_id,
    check_vocab,
    encode_docs,
    save_token_bytes,
    save_tokenizer,
    train_tokenizer,
)

DEFAULT_VOCAB = 2048
DEFAULT_SHARD_TOKENS = 1 << 26
TOKENIZER_TRAIN_BYTES = 100_000_000  # the tokenizer is trained on at most this much train text
ENCODE_BATCH_CHARS = 4 << 20  # tokenize this much text per batch (bounded memory, big enough for threads)


@dataclass(frozen=True)
class Prepared:
    directory: Path
    manifest: Manifest
    reused: bool = False


def dataset_dir(name: str | Path, vocab: int, root: Path | None = None) -> Path:
    """``<root or data_root()>/<name>-v<vocab>``; local paths get ``local-<basename>-<hash of the path>``."""
    check_vocab(vocab)
    ref = resolve_dataset(name)
    return Path(root if root is not None else data_root()) / f"{ref.dir_stem}-v{vocab}"


def prepare_command(name: str | Path, vocab: int) -> str:
    """The exact CLI command that prepares this dataset."""
    return f"autoresearch prepare --dataset {shlex.quote(str(name))} --vocab {vocab}"


def list_prepared(root: Path | None = None) -> list[tuple[Path, Manifest]]:
    """Every complete prepared dataset (a readable manifest) under ``root``, sorted by directory name."""
    root = Path(root if root is not None else data_root())
    if not root.is_dir():
        return []
    out: list[tuple[Path, Manifest]] = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not (d / MANIFEST_NAME).is_file():
            continue
        try:
            out.append((d, read_manifest(d)))
        except DataError:
            continue
    return out


def load_prepared(name_or_path: str | Path, vocab: int, root: Path | None = None) -> Prepared:
    """The prepared dataset for (name, vocab); a DataError with the command to run when it is missing."""
    directory = dataset_dir(name_or_path, vocab, root)
    if not (directory / MANIFEST_NAME).is_file():
        raise DataError(
            f"{name_or_path} is not prepared for vocab {vocab} (nothing complete at {directory}). "
            f"Run `{prepare_command(name_or_path, vocab)}` first."
        )
    return Prepared(directory, read_manifest(directory), reused=True)


def prepare(
    dataset: str | Path,
    vocab: int = DEFAULT_VOCAB,
    *,
    root: Path | None = None,
    progress: Progress = NullProgress(),
    force: bool = False,
    max_bytes: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    shards: int | None = None,
    tokenizer_bytes: int = TOKENIZER_TRAIN_BYTES,
) -> Prepared:
    """Prepare ``dataset`` (a name from ``sources.DATASETS`` or a local path) with a ``vocab``-id tokenizer.

    ``max_bytes`` prepares only a slice (the first files / documents); ``shards`` is the number of
    training shards for sharded hub datasets (climbmix, default 8; ignored elsewhere); ``shard_tokens`` the
    size of output shards; ``tokenizer_bytes`` caps the train text the tokenizer is trained on.
    """
    check_vocab(vocab)
    if shard_tokens < 1:
        raise DataError(f"shard_tokens must be positive, got {shard_tokens}.")
    ref = resolve_dataset(dataset)
    final = dataset_dir(dataset, vocab, root)
    hub = HUB_DATASETS.get(ref.name) if ref.path is None else None
    shards = (shards or hub.default_shards) if hub is not None and hub.train_pattern else None
    options = {"vocab": vocab, "max_bytes": max_bytes, "shards": shards, "shard_tokens": shard_tokens,
               "tokenizer_bytes": tokenizer_bytes}
    if (final / MANIFEST_NAME).is_file() and not force:
        try:
            existing = read_manifest(final)
        except DataError:
            existing = None
        if existing is not None and existing.source.get("options") == options:
            progress.message(f"Using the prepared data at {final} (pass force to rebuild).")
            return Prepared(final, existing, reused=True)
        progress.message(f"{final} was prepared with other options; preparing it again.")
    started = time.monotonic()
    progress.message(f"Preparing {ref.name} with vocab {vocab} into {final}")
    source = open_source(ref, max_bytes=max_bytes, shards=shards, progress=progress)
    plan = plan_splits((u.id, u.role) for u in source.units)
    with _BuildDir(final) as tmp:
        manifest = _build(tmp, ref, source, plan, vocab, options, shard_tokens, tokenizer_bytes, progress)
        manifest.write(tmp)
        final = _commit(tmp, final)
    elapsed = time.monotonic() - started
    progress.message(
        f"Prepared {manifest.dataset}: {manifest.split_tokens('train'):,} train tokens, "
        f"{manifest.split_tokens('val'):,} val, {manifest.split_tokens('test'):,} test, "
        f"{manifest.stats['bytes_per_token']:.2f} bytes/token, unigram bpb {manifest.stats['unigram_bpb']:.3f} "
        f"in {elapsed:.1f} s"
    )
    return Prepared(final, read_manifest(final))


# -- the build ----------------------------------------------------------------------------------------


def _build(
    tmp: Path,
    ref: DatasetRef,
    source: Source,
    plan: SplitPlan,
    vocab: int,
    options: dict[str, Any],
    shard_tokens: int,
    tokenizer_bytes: int,
    progress: Progress,
) -> Manifest:
    # 1. tokenizer, on the train split only (units known to hold no train text are not even read)
    train_units = [u for u in source.units if u.role != "heldout" and plan.unit_split(u.id) in ("train", None)]
    train_texts = (text for unit, i, text in source.documents(train_units) if plan.split_of(unit.id, i) == "train")
    sizes_known = all(not u.id.endswith(".parquet") for u in source.units)  # parquet: compressed size
    estimate = sum(u.size for u in train_units) if sizes_known else None
    enc, trained_on = train_tokenizer(
        train_texts, vocab, progress=progress, max_bytes=tokenizer_bytes, expected_bytes=estimate
    )
    save_tokenizer(enc, tmp / TOKENIZER_NAME)
    token_bytes = save_token_bytes(enc, tmp / TOKEN_BYTES_NAME)
    bos = bos_id(enc)

    # 2. tokenize everything, streamed, into shards
    dtype = shard_dtype(enc.n_vocab)
    writers = {s: _ShardWriter(tmp, s, np.dtype(dtype).newbyteorder("<"), shard_tokens) for s in SPLITS}
    counts = {s: np.zeros(enc.n_vocab, dtype=np.int64) for s in ("train", "val")}
    stats: dict[str, dict[str, Any]] = {s: {"documents": 0, "bytes": 0, "tokens": 0} for s in SPLITS}
    total = sum(u.size for u in source.units) if sizes_known else None
    batch: list[tuple[str, str]] = []
    batch_chars = 0
    with progress.task("tokenize", total=total, unit="B") as task:

        def flush() -> None:
            nonlocal batch, batch_chars
            if not batch:
                return
            arrays = encode_docs(enc, [text for _, text in batch])
            grouped: dict[str, tuple[list[np.ndarray], int]] = {}
            done = 0
            for (split, text), arr in zip(batch, arrays, strict=True):
                n = len(text.encode("utf-8"))
                done += n
                arrs, nbytes = grouped.setdefault(split, ([], 0))
                arrs.append(arr)
                grouped[split] = (arrs, nbytes + n)
            for split, (arrs, nbytes) in grouped.items():
                cat = np.concatenate(arrs)
                counted = int(token_bytes[cat].sum(dtype=np.int64))
                if counted != nbytes:  # cannot happen with a lossless tokenizer; guard the metric anyway
                    raise DataError(f"Token byte lengths ({counted}) disagree with the text ({nbytes} bytes).")
                if split in counts:
                    counts[split] += np.bincount(cat, minlength=enc.n_vocab)
                st = stats[split]
                st["documents"] += len(arrs)
                st["bytes"] += nbytes
                st["tokens"] += int(cat.size)
                writers[split].add(arrs)
            task.update(done)
            batch, batch_chars = [], 0

        for unit, index, text in source.documents():
            batch.append((plan.split_of(unit.id, index), text))
            batch_chars += len(text)
            if batch_chars >= ENCODE_BATCH_CHARS:
                flush()
        flush()
    shards = {s: writers[s].close() for s in SPLITS}

    empty = [s for s in SPLITS if stats[s]["documents"] == 0]
    total_docs = sum(st["documents"] for st in stats.values())
    if total_docs == 0:
        raise DataError(f"{ref.name} holds no text (it is empty or whitespace only). Give a source with some text.")
    if empty:
        raise DataError(
            f"{ref.name} gave {total_docs} document(s), and the {', '.join(empty)} split(s) got none: there is too "
            f"little text to hold out validation and test data. Give more text (at least three documents or "
            f"files){' or a larger max_bytes' if options['max_bytes'] else ''}."
        )

    # 3. statistics
    for st in stats.values():
        st["bytes_per_token"] = round(st["bytes"] / max(1, st["tokens"] - st["documents"]), 6)
    summary: dict[str, Any] = {
        "splits": stats,
        "bytes_per_token": stats["train"]["bytes_per_token"],
        "unigram_bpb": round(unigram_bpb(counts["train"], counts["val"], bos, stats["val"]["bytes"]), 6),
        "tokenizer_train_bytes": trained_on,
    }

    provenance = dict(source.provenance)
    provenance["options"] = options
    provenance["tokenizer"] = {
        "train_split_only": True,
        "train_cap_bytes": tokenizer_bytes,
        "trained_on_bytes": trained_on,
        "pattern": SPLIT_PATTERN,
        "bpe_tokens": enc.n_vocab - 1,
        "rustbpe": _version("rustbpe"),
        "tiktoken": _version("tiktoken"),
    }
    provenance["split"] = {"val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION, **plan.describe()}
    return Manifest(
        dataset=source.name,
        vocab_size=enc.n_vocab,
        bos_id=bos,
        dtype=dtype,
        splits=shards,
        tokenizer_sha256=sha256_file(tmp / TOKENIZER_NAME),
        token_bytes_sha256=sha256_file(tmp / TOKEN_BYTES_NAME),
        source=provenance,
        stats=summary,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def unigram_bpb(train_counts: np.ndarray, val_counts: np.ndarray, bos: int, val_bytes: int) -> float:
    """Bits per byte of the val tokens under p(t) = (count_train(t) + 1) / (N + V), BOS left out of both."""
    train = train_counts.astype(np.float64).copy()
    val = val_counts.astype(np.float64).copy()
    train[bos] = 0.0
    val[bos] = 0.0
    types = train.size - 1  # every token but BOS
    p = (train + 1.0) / (train.sum() + types)
    bits = -float((val * np.log2(p)).sum())
    return bits / val_bytes if val_bytes else math.nan


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class _ShardWriter:
    """Writes whole documents into ``<split>_NNNN.bin`` files of about ``shard_tokens`` tokens each.

    A shard never splits a document, so each shard starts with BOS; a document longer than
    ``shard_tokens`` gets a shard of its own.
    """

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, dtype, shard_tokens
        self.shards: list[ShardInfo] = []
        self._pending: list[np.ndarray] = []
        self._tokens = 0
        self._docs = 0
        self._file: Any = None
        self._hash: Any = None

    def add(self, docs: Iterable[np.ndarray]) -> None:
        for doc in docs:
            if self._tokens and self._tokens + doc.size > self.shard_tokens:
                self._finish_shard()
            self._pending.append(doc)
            self._tokens += doc.size
            self._docs += 1
        self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        if self._file is None:
            name = f"{self.split}_{len(self.shards):04d}.bin"
            self._file = open(self.directory / name, "wb")
            self._hash = hashlib.sha256()
        data = np.concatenate(self._pending).astype(self.dtype, copy=False).tobytes()
        self._file.write(data)
        self._hash.update(data)
        self._pending = []

    def _finish_shard(self) -> None:
        self._write_pending()
        if self._file is None:
            return
        name = Path(self._file.name).name
        self._file.close()
        self.shards.append(ShardInfo(file=name, tokens=self._tokens, docs=self._docs, sha256=self._hash.hexdigest()))
        self._file, self._hash, self._tokens, self._docs = None, None, 0, 0

    def close(self) -> list[ShardInfo]:
        self._finish_shard()
        return self.shards


# -- atomic build directory -----------------------------------------------------------------------------


class _BuildDir:
    """A hidden sibling directory ``.<final>.tmp-<pid>-<n>``, removed unless committed."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.path: Path | None = None

    def __enter__(self) -> Path:
        parent = self.final.parent
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, self.final.name)
        self.path = parent / f".{self.final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


def _remove_stale(parent: Path, name: str) -> None:
    """Remove build/old directories left by prepares that died (their process is gone)."""
    for p in parent.glob(f".{name}.*-*-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _commit(tmp: Path, final: Path) -> Path:
    """Move the finished build into place; an older directory at ``final`` is replaced."""
    old: Path | None = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        if (final / MANIFEST_NAME).is_file():  # another prepare finished first: keep its result
            return final
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


# The loaders and the CLI mostly need these; the rest is internal.
__all__ = [
    "DEFAULT_SHARD_TOKENS",
    "DEFAULT_VOCAB",
    "TOKENIZER_TRAIN_BYTES",
    "Prepared",
    "dataset_dir",
    "list_prepared",
    "load_prepared",
    "prepare",
    "prepare_command",
    "unigram_bpb",
]
