"""The prepared-data format and its manifest: the contract between `prepare`, the loaders and the engine.

A prepared dataset is a directory (by default ``<cache>/data/<dataset>-v<vocab>/``) holding::

    manifest.json          this module's Manifest, written last (its presence means "complete")
    tokenizer.json         pattern, mergeable ranks (base64) and special tokens of the tiktoken Encoding
    token_bytes.npy        int32[vocab]: true UTF-8 byte length of every token id, 0 for special tokens
    train_0000.bin ...     raw little-endian token ids (dtype in the manifest: uint16 when vocab <= 65536)
    val_0000.bin ...
    test_0000.bin ...

Every document in a shard starts with the BOS token (``bos_id``); shards are plain concatenations of
documents, so document boundaries are the positions of BOS. Splits are assigned per document,
deterministically. The manifest records the sha256 of every shard, of the tokenizer and of the token byte
table; ``Manifest.digest`` (sha256 of the canonical manifest JSON) binds a training result to its data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_NAME = "tokenizer.json"
TOKEN_BYTES_NAME = "token_bytes.npy"
SPLITS = ("train", "val", "test")
_STAMP_NAME = ".verified.json"


class DataError(Exception):
    """A problem with prepared data; the message says what to do about it."""


def prepare_again(data_dir: Path | str) -> str:
    """The command that rebuilds a damaged prepared folder (a plain `prepare` would reuse it: --force)."""
    found = re.fullmatch(r"(.+)-v(\d+)", Path(data_dir).name)
    if found and not found.group(1).startswith("local-"):
        return f"Prepare it again: `autoresearch prepare --force --dataset {found.group(1)} --vocab {found.group(2)}`."
    return "Prepare it again with `autoresearch prepare --force` and the same --dataset and --vocab as before."


@dataclass
class ShardInfo:
    file: str  # name relative to the dataset directory
    tokens: int
    docs: int
    sha256: str


@dataclass
class Manifest:
    dataset: str  # name ("stdlib", "tinystories", ...) or "local:<name>"
    vocab_size: int
    bos_id: int
    dtype: str  # numpy dtype name of the shards: "uint16" or "uint32"
    splits: dict[str, list[ShardInfo]]
    tokenizer_sha256: str
    token_bytes_sha256: str
    source: dict[str, Any] = field(default_factory=dict)  # provenance: python version, files, urls, checksums
    stats: dict[str, Any] = field(default_factory=dict)  # documents, bytes, tokens per split, bytes/token, ...
    created: str = ""
    format_version: int = FORMAT_VERSION

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Manifest":
        raw = dict(raw)
        raw["splits"] = {k: [ShardInfo(**s) for s in v] for k, v in raw["splits"].items()}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def canonical_json(self) -> str:
        """The manifest without its creation time: the same data prepared twice has the same identity."""
        content = self.to_dict()
        content.pop("created", None)
        return json.dumps(content, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """sha256 of the canonical manifest: the data identity recorded with every result."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def split_tokens(self, split: str) -> int:
        return sum(s.tokens for s in self.splits.get(split, []))

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def shard_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: Path) -> Manifest:
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.exists():
        raise DataError(
            f"No prepared data at {directory} (manifest.json is missing). "
            f"Run `autoresearch prepare --dataset {_guess_name(directory)}` first."
        )
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"The manifest at {path} is unreadable ({e}). Delete {directory} and run `autoresearch prepare` again."
        ) from e


def _guess_name(directory: Path) -> str:
    name = Path(directory).name
    return name.rsplit("-v", 1)[0] if "-v" in name else name


def reprepare_hint(manifest: Manifest) -> str:
    """The command that rebuilds this dataset (local datasets are named by their path)."""
    name = manifest.source.get("path") if manifest.dataset.startswith("local") else None
    vocab = manifest.source.get("options", {}).get("vocab", manifest.vocab_size)
    return f"`autoresearch prepare --dataset {name or manifest.dataset} --vocab {vocab} --force`"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verify(directory: Path, manifest: Manifest | None = None, *, use_cache: bool = True) -> Manifest:
    """Check every file the manifest names against its sha256; raise DataError naming the first mismatch.

    Hashing gigabytes on every training start is wasteful, so a successful verification leaves a stamp
    (size, mtime, inode of every file). With ``use_cache`` a file whose stamp is unchanged is not re-hashed;
    any change of size, modification time or inode forces a full hash. ``use_cache=False`` always hashes.
    """
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    stamp_path = directory / _STAMP_NAME
    cached: dict[str, Any] = {}
    if use_cache and stamp_path.exists():
        try:
            cached = json.loads(stamp_path.read_text())
        except ValueError:
            cached = {}
        if cached.get("digest") != manifest.digest:
            cached = {}
    expected = {TOKENIZER_NAME: manifest.tokenizer_sha256, TOKEN_BYTES_NAME: manifest.token_bytes_sha256}
    for shards in manifest.splits.values():
        for s in shards:
            expected[s.file] = s.sha256
    stamps: dict[str, list[int]] = {}
    for name, sha in expected.items():
        path = directory / name
        if not path.exists():
            raise DataError(
                f"{path} is missing from the prepared data. Run {reprepare_hint(manifest)}."
            )
        stamp = _stamp(path)
        if cached.get("files", {}).get(name) == stamp:
            stamps[name] = stamp
            continue
        if sha256_file(path) != sha:
            raise DataError(
                f"{path} does not match its checksum in the manifest: the data was modified or corrupted. "
                f"Refusing to use it. Run {reprepare_hint(manifest)}."
            )
        stamps[name] = stamp
    try:
        tmp = stamp_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"digest": manifest.digest, "files": stamps}))
        os.replace(tmp, stamp_path)
    except OSError:
        pass  # read-only data directory: verification still happened, it just is not cached
    return manifest


def load_token_bytes(directory: Path) -> np.ndarray:
    return np.load(Path(directory) / TOKEN_BYTES_NAME)


def open_shard(directory: Path, manifest: Manifest, shard: ShardInfo) -> np.ndarray:
    """Memory-map one shard read-only."""
    path = Path(directory) / shard.file
    arr = np.memmap(path, dtype=np.dtype(manifest.dtype).newbyteorder("<"), mode="r")
    if arr.shape[0] != shard.tokens:
        raise DataError(f"{path} holds {arr.shape[0]} tokens but the manifest says {shard.tokens}.")
    return arr
