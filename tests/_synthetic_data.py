"""Small prepared datasets for tests: real shards, token byte table, tokenizer file and manifest.

Tests import this module as ``_synthetic_data`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tiktoken

from autoresearch.harness import manifest as mf

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
BOS = "<|bos|>"

# words with multi-byte UTF-8 characters, so byte lengths differ from character counts
WORDS = (
    "the", "cat", "sat", "on", "a", "mat", "and", "then", "café", "naïve", "日本", "über", "thing", "in", "3",
    "42",
)


def byte_encoding(merges: Sequence[bytes] = ()) -> tiktoken.Encoding:
    """A byte-level tiktoken Encoding (256 byte tokens), optional merges after them, then BOS.

    Each merge must be the concatenation of two earlier tokens (e.g. b"th", then b"the").
    """
    ranks = {bytes([i]): i for i in range(256)}
    for m in merges:
        ranks[m] = len(ranks)
    return tiktoken.Encoding(
        name=f"test-bytes-{len(ranks)}", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={BOS: len(ranks)}
    )


def token_bytes_of(enc: tiktoken.Encoding) -> np.ndarray:
    """int32[vocab]: the UTF-8 byte length of each token, 0 for special tokens."""
    special = set(enc.special_tokens_set)
    out = np.zeros(enc.n_vocab, dtype=np.int32)
    for i in range(enc.n_vocab):
        token = enc.decode_single_token_bytes(i)
        if token.decode("utf-8", errors="replace") not in special:
            out[i] = len(token)
    return out


def random_text(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words))


def encode_docs(enc: tiktoken.Encoding, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text as a document: BOS then its tokens."""
    bos = enc.encode_single_token(BOS)
    return [np.array([bos, *enc.encode_ordinary(t)], dtype=np.int64) for t in texts]


def random_docs(
    rng: np.random.Generator, n_docs: int, vocab_size: int, bos_id: int, min_len: int, max_len: int
) -> list[np.ndarray]:
    """Documents of random non-BOS tokens, lengths uniform in [min_len, max_len] (BOS included)."""
    docs = []
    for length in rng.integers(min_len, max_len + 1, n_docs):
        body = rng.integers(0, vocab_size - 1, int(length) - 1)
        body[body >= bos_id] += 1  # skip the BOS id
        docs.append(np.concatenate([[bos_id], body]).astype(np.int64))
    return docs


def numbered_docs(lengths: Sequence[int], bos_id: int, first: int = 0) -> list[np.ndarray]:
    """Documents of the given lengths (BOS included) whose other tokens are first, first + 1, ... in order.

    Every non-BOS token is distinct, so a token alone tells which document it comes from and where.
    """
    docs, nxt = [], first
    for length in lengths:
        docs.append(np.concatenate([[bos_id], np.arange(nxt, nxt + int(length) - 1)]).astype(np.int64))
        nxt += int(length) - 1
    assert nxt <= bos_id, "too many tokens for distinct ids below BOS"
    return docs


def write_dataset(
    directory: Path,
    splits: dict[str, Sequence[np.ndarray]],
    *,
    vocab_size: int,
    bos_id: int,
    token_bytes: np.ndarray,
    shard_tokens: int = 1 << 20,
    encoding: tiktoken.Encoding | None = None,
    dataset: str = "synthetic",
) -> mf.Manifest:
    """Write documents (each starting with BOS) as shards of about ``shard_tokens`` tokens, plus manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = mf.shard_dtype(vocab_size)
    tokenizer = {
        "name": encoding.name if encoding else dataset,
        "pattern": encoding._pat_str if encoding else PATTERN,
        "mergeable_ranks": {
            base64.b64encode(k).decode(): v for k, v in (encoding._mergeable_ranks.items() if encoding else ())
        },
        "special_tokens": dict(encoding._special_tokens) if encoding else {BOS: bos_id},
    }
    (directory / mf.TOKENIZER_NAME).write_text(json.dumps(tokenizer))
    np.save(directory / mf.TOKEN_BYTES_NAME, np.asarray(token_bytes, dtype=np.int32))
    shard_infos: dict[str, list[mf.ShardInfo]] = {}
    for split, docs in splits.items():
        infos: list[mf.ShardInfo] = []
        pending: list[np.ndarray] = []
        pending_tokens = 0

        def flush() -> None:
            nonlocal pending, pending_tokens
            if not pending:
                return
            name = f"{split}_{len(infos):04d}.bin"
            np.concatenate(pending).astype(np.dtype(dtype).newbyteorder("<")).tofile(directory / name)
            infos.append(mf.ShardInfo(name, pending_tokens, len(pending), mf.sha256_file(directory / name)))
            pending, pending_tokens = [], 0

        for doc in docs:
            assert doc[0] == bos_id and not np.any(doc[1:] == bos_id)
            pending.append(doc)
            pending_tokens += len(doc)
            if pending_tokens >= shard_tokens:
                flush()
        flush()
        shard_infos[split] = infos
    manifest = mf.Manifest(
        dataset=dataset,
        vocab_size=vocab_size,
        bos_id=bos_id,
        dtype=dtype,
        splits=shard_infos,
        tokenizer_sha256=mf.sha256_file(directory / mf.TOKENIZER_NAME),
        token_bytes_sha256=mf.sha256_file(directory / mf.TOKEN_BYTES_NAME),
        stats={split: {"docs": len(d), "tokens": int(sum(len(x) for x in d))} for split, d in splits.items()},
        created="2026-01-01T00:00:00Z",
    )
    manifest.write(directory)
    return manifest


def read_docs(directory: Path, split: str) -> list[np.ndarray]:
    """The documents of a split in file order, read back with plain numpy (independent of the loader)."""
    manifest = mf.read_manifest(directory)
    docs: list[np.ndarray] = []
    for info in manifest.splits[split]:
        tokens = np.fromfile(Path(directory) / info.file, dtype=np.dtype(manifest.dtype).newbyteorder("<"))
        starts = [i for i, t in enumerate(tokens.tolist()) if t == manifest.bos_id]
        for a, b in zip(starts, starts[1:] + [len(tokens)]):
            docs.append(tokens[a:b].astype(np.int64))
    return docs
