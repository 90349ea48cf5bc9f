"""The tokenizer: byte-level BPE trained with rustbpe, used through a ``tiktoken.Encoding``.

Vocabulary layout for ``--vocab N`` (N >= 257): ids ``0 .. N-2`` are BPE tokens (256 single bytes, then
N-257 merges in training order) and id ``N-1`` is the special token ``<|bos|>``; ``n_vocab == N``.

``--vocab 256`` is special: it means a plain byte-level tokenizer (no merges), i.e. 256 byte tokens plus
``<|bos|>`` = 257 ids in total. (So ``--vocab 256`` and ``--vocab 257`` give the same tokenizer.)

``tokenizer.json`` holds the split pattern, the mergeable ranks as base64 strings in rank order (the
token with id ``i`` is ``mergeable_ranks[i]``) and the special tokens. Nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken

from ..progress import NullProgress, Progress
from .manifest import DataError, prepare_again

BOS = "<|bos|>"
TOKENIZER_FORMAT = 1
BYTE_LEVEL_VOCAB = 256
# GPT-4 style pre-tokenisation (the regex rustbpe uses by default), pinned here so that it is recorded.
SPLIT_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
)


def total_vocab(vocab: int) -> int:
    """The n_vocab (BOS included) that ``--vocab vocab`` gives: ``vocab``, except 256 -> 257."""
    check_vocab(vocab)
    return BYTE_LEVEL_VOCAB + 1 if vocab == BYTE_LEVEL_VOCAB else vocab


def check_vocab(vocab: int) -> None:
    if not isinstance(vocab, int) or vocab < BYTE_LEVEL_VOCAB:
        raise DataError(
            f"--vocab must be at least 256 (256 = byte-level: 256 byte tokens + <|bos|>), got {vocab!r}."
        )
    if vocab > 1 << 20:
        raise DataError(f"--vocab {vocab} is unreasonably large for this tool; use at most 1048576.")


def build_encoding(pattern: str, ranks: Sequence[bytes], name: str = "autoresearch") -> tiktoken.Encoding:
    """A tiktoken Encoding from mergeable ranks in id order, with ``<|bos|>`` as the last id."""
    mergeable = {token: i for i, token in enumerate(ranks)}
    if len(mergeable) != len(ranks):
        raise DataError("The tokenizer has duplicate tokens; delete the prepared data and prepare it again.")
    return tiktoken.Encoding(
        name=name,
        pat_str=pattern,
        mergeable_ranks=mergeable,
        special_tokens={BOS: len(ranks)},
        explicit_n_vocab=len(ranks) + 1,
    )


def byte_level_encoding() -> tiktoken.Encoding:
    """256 single-byte tokens + <|bos|> (what ``--vocab 256`` means)."""
    return build_encoding(SPLIT_PATTERN, [bytes([b]) for b in range(256)], name="autoresearch-bytes")


def train_tokenizer(
    texts: Iterable[str],
    vocab: int,
    *,
    progress: Progress = NullProgress(),
    max_bytes: int | None = None,
    expected_bytes: int | None = None,
) -> tuple[tiktoken.Encoding, int]:
    """Train a BPE of ``total_vocab(vocab)`` ids (BOS included) on ``texts``; returns (encoding, bytes used).

    ``max_bytes`` caps how much text is read (the first documents, up to the one crossing the cap). For
    ``vocab`` 256 or 257 no text is needed and none is read. ``expected_bytes`` (an estimate of the text
    available) sizes the progress bar.
    """
    n_vocab = total_vocab(vocab)
    if n_vocab - 1 <= BYTE_LEVEL_VOCAB:
        return byte_level_encoding(), 0
    import rustbpe

    used = 0

    def feed() -> Iterator[str]:
        nonlocal used
        sizes = [n for n in (max_bytes, expected_bytes) if n is not None]
        with progress.task("tokenizer: read training text", total=min(sizes) if sizes else None, unit="B") as task:
            for text in texts:
                if max_bytes is not None and used >= max_bytes:
                    return
                n = len(text.encode("utf-8"))
                used += n
                task.update(n)
                yield text

    progress.message(f"Training a BPE tokenizer ({n_vocab - 1} tokens + {BOS})")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(feed(), vocab_size=n_vocab - 1, pattern=SPLIT_PATTERN)
    if used == 0:
        raise DataError(
            "The train split has no text to train the tokenizer on: the input is empty, whitespace only, or too "
            "small to split. Give more text."
        )
    ranks = sorted(trainer.get_mergeable_ranks(), key=lambda item: item[1])
    if [r for _, r in ranks] != list(range(len(ranks))):
        raise DataError("rustbpe returned non-contiguous token ranks; this rustbpe version is not supported.")
    if len(ranks) != n_vocab - 1:
        raise DataError(
            f"The training text ({used} bytes) only supports {len(ranks) - 256} BPE merges, but --vocab {vocab} "
            f"needs {n_vocab - 1 - 256}. Use a smaller --vocab (for instance {max(257, len(ranks) // 2 + 1)}) or "
            f"more text."
        )
    return build_encoding(SPLIT_PATTERN, [tok for tok, _ in ranks]), used


def bos_id(enc: tiktoken.Encoding) -> int:
    return enc.encode_single_token(BOS)


def token_byte_lengths(enc: tiktoken.Encoding) -> np.ndarray:
    """int32[n_vocab]: the UTF-8 byte length of every token (0 for BOS and any other special token)."""
    specials = set(enc.special_tokens_set)
    special_ids = {enc.encode_single_token(s) for s in specials}
    out = np.zeros(enc.n_vocab, dtype=np.int32)
    for i in range(enc.n_vocab):
        if i not in special_ids:
            out[i] = len(enc.decode_single_token_bytes(i))
    return out


def encode_docs(enc: tiktoken.Encoding, docs: Sequence[str], *, num_threads: int | None = None) -> list[np.ndarray]:
    """Tokenize documents (ordinary text: a literal "<|bos|>" in a document is plain text), each prefixed with BOS."""
    if not docs:
        return []
    bos = bos_id(enc)
    dtype = np.uint32 if enc.n_vocab > 1 << 16 else np.uint16
    batches = enc.encode_ordinary_batch(list(docs), num_threads=num_threads or os.cpu_count() or 1)
    out: list[np.ndarray] = []
    for ids in batches:
        arr = np.empty(len(ids) + 1, dtype=dtype)
        arr[0] = bos
        arr[1:] = ids
        out.append(arr)
    return out


def decode_doc(enc: tiktoken.Encoding, ids: Iterable[int]) -> str:
    """Decode a document's token ids (a leading BOS is dropped)."""
    ids = [int(i) for i in ids]
    if ids and ids[0] == bos_id(enc):
        ids = ids[1:]
    return enc.decode(ids, errors="strict")


# -- tokenizer.json --------------------------------------------------------------------------------------


def tokenizer_dict(enc: tiktoken.Encoding) -> dict[str, Any]:
    bos = bos_id(enc)
    ranks = [enc.decode_single_token_bytes(i) for i in range(bos)]
    return {
        "format": TOKENIZER_FORMAT,
        "name": enc.name,
        "pattern": getattr(enc, "_pat_str", SPLIT_PATTERN),
        "mergeable_ranks": [base64.b64encode(tok).decode("ascii") for tok in ranks],
        "special_tokens": {BOS: bos},
        "n_vocab": enc.n_vocab,
    }


def save_tokenizer(enc: tiktoken.Encoding, path: Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(tokenizer_dict(enc), indent=None, separators=(",", ":")) + "\n")
    return path


def load_tokenizer(path: Path) -> tiktoken.Encoding:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        ranks = [base64.b64decode(tok) for tok in raw["mergeable_ranks"]]
        pattern = raw["pattern"]
        specials = raw["special_tokens"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a readable tokenizer ({e}). {prepare_again(path.parent)}") from e
    if raw.get("format") != TOKENIZER_FORMAT or specials != {BOS: len(ranks)}:
        raise DataError(f"{path} has an unsupported tokenizer layout. {prepare_again(path.parent)}")
    return build_encoding(pattern, ranks, name=raw.get("name", "autoresearch"))


def save_token_bytes(enc: tiktoken.Encoding, path: Path) -> np.ndarray:
    arr = token_byte_lengths(enc)
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    return arr
