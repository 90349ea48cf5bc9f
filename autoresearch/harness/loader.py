"""Backend-neutral token batches from prepared shards: BOS-aligned best-fit packing on numpy.

A batch is a pair ``(inputs, targets)`` of C-contiguous ``int32`` arrays of shape ``(B, T)``. Each of the
``B`` rows is built from ``T + 1`` tokens ``r``: ``inputs = r[:-1]`` and ``targets = r[1:]``.

Packing (no padding; every row starts with BOS; no token is dropped except in the unfinished last row of
a finite pass):

* Documents are the spans between BOS tokens of the memory-mapped shards (every document starts with BOS).
* A buffer holds up to ``buffer_docs`` items. An item is a whole document that has not been placed yet,
  or the continuation of a document that was cropped: its tokens not placed yet. A continuation is
  always placed after a BOS token that the loader inserts, so every piece of a row starts with BOS. An
  item's *size* is the number of row tokens it takes: the document length (its BOS included), or one
  plus the number of tokens left for a continuation. Each item keeps the *age* of its document: its
  position in the reading order. The buffer is topped up with the next documents of the stream before
  every placement.
* A row (``T + 1`` tokens) starts with the oldest item: whole if its size is at most ``T + 1``, else
  cropped to the row.
* Then, until the row is full: the largest item that fits in the space left is placed whole (the oldest
  among equally large ones); when no item fits, the smallest item (the oldest among equally small ones)
  is cropped to the space left.
* Cropping an item of size ``s`` to ``k`` tokens places its first ``k`` tokens (for a continuation: the
  inserted BOS and ``k - 1`` tokens) and leaves in the buffer a continuation of size ``s - k + 1`` with
  the same age. So a document longer than a row fills the start of consecutive rows, and every token of
  every document is placed once, in order, in pieces that each follow a BOS. (A crop to a single token
  places only a BOS.) The inserted BOS tokens are never counted targets of the evaluation
  (``token_bytes[BOS] == 0``).
* Starting every row with the oldest item bounds how long any document waits in the buffer, whatever its
  length: without it, long documents would be held back while shorter ones keep arriving, and any prefix
  of a pass (such as the rows an evaluation reads) would under-represent them.
* ``stats`` counts rows, pieces, finished documents, document tokens placed (``tokens_used``), inserted
  BOS tokens (``bos_inserted``; ``tokens_used + bos_inserted == rows * (T + 1)``) and tokens lost in the
  unfinished last row of a finite pass (``tokens_dropped``); ``utilization`` is the fraction of the
  document tokens taken from the stream that ended up in rows.

Order: the ``train`` split is shuffled deterministically from ``seed`` (a permutation of the shards and
of the documents in each shard, new for every epoch) and loops over epochs forever unless ``epochs`` is
given. ``val`` and ``test`` are read in order, once, without shuffling, so evaluation sees the same rows
whatever the seed or batch size (rows are packed one at a time, independently of ``batch_size``).

Speed: the packing does a few list and dict operations per piece (never per token); tokens move with one
slice copy per piece.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoresearch.harness import manifest as mf
from autoresearch.harness.manifest import DataError, Manifest

__all__ = ["DataError", "LoaderStats", "TokenBatches"]

DEFAULT_BUFFER_DOCS = 1000
_KEY_SHIFT = 40  # a document is keyed as (shard index << 40) | start offset
_KEY_MASK = (1 << _KEY_SHIFT) - 1
_CHUNK_DOCS = 8192  # documents moved from numpy into Python lists at a time
_SCAN_TOKENS = 1 << 24  # tokens compared against BOS at a time when finding documents
_SEQ_BITS = 48  # a buffered item is ordered by (size << 48) | age
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_STATE_VERSION = 2


@dataclass
class LoaderStats:
    """Counters of what the loader consumed and emitted so far."""

    rows: int = 0  # complete rows emitted
    pieces: int = 0  # pieces placed into emitted rows: whole documents, first pieces and continuations
    docs: int = 0  # documents whose last token was placed into an emitted row
    tokens_used: int = 0  # document tokens placed into emitted rows (inserted BOS tokens not included)
    bos_inserted: int = 0  # BOS tokens the loader inserted before continuation pieces in emitted rows
    tokens_dropped: int = 0  # document tokens taken but lost: the unfinished last row of a finite pass
    epoch: int = 0  # epoch being read, 0-based (reading runs ahead of the rows by up to buffer_docs documents)

    @property
    def utilization(self) -> float:
        """Fraction of the document tokens taken from the stream that ended up in rows (1.0 at first)."""
        total = self.tokens_used + self.tokens_dropped
        return self.tokens_used / total if total else 1.0


class _DocIndex:
    """Document start offsets and lengths of each shard, found once per shard from the BOS positions."""

    def __init__(self, shards: list[np.ndarray], files: list[str], bos_id: int) -> None:
        self._shards = shards
        self._files = files
        self._bos = bos_id
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def docs(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, lengths) as int64 arrays, in file order."""
        hit = self._cache.get(shard)
        if hit is None:
            hit = self._cache[shard] = self._scan(shard)
        return hit

    def _scan(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self._shards[shard]
        bos = tokens.dtype.type(self._bos)
        parts = [
            np.flatnonzero(tokens[o : o + _SCAN_TOKENS] == bos) + o for o in range(0, tokens.shape[0], _SCAN_TOKENS)
        ]
        starts = np.concatenate(parts).astype(np.int64, copy=False)
        if starts.size == 0 or starts[0] != 0:
            raise DataError(
                f"{self._files[shard]} does not start with the BOS token ({self._bos}): the prepared data is "
                "malformed. Delete it and run `autoresearch prepare` again."
            )
        lengths = np.diff(starts, append=np.int64(tokens.shape[0]))
        return starts, lengths


class _DocStream:
    """The documents of a split in reading order, as (key, length) pairs, epoch after epoch."""

    def __init__(self, index: _DocIndex, n_shards: int, *, shuffle: bool, seed: int, epochs: int | None) -> None:
        self._index = index
        self._n_shards = n_shards
        self._shuffle = shuffle
        self._seed = seed
        self._epochs = epochs
        self.epoch = 0
        self._shard_pos = 0  # position in this epoch's shard order
        self._doc_pos = 0  # position, in the current shard's order, of the first document of the chunk
        self._chunk_keys: list[int] = []
        self._chunk_lens: list[int] = []
        self._chunk_i = 0
        self._order: tuple[int, np.ndarray, np.ndarray] | None = None  # (shard, keys, lengths) in reading order
        self._shard_order = self._make_shard_order()
        self.exhausted = False

    # -- order ------------------------------------------------------------------------------------------
    def _make_shard_order(self) -> np.ndarray:
        if not self._shuffle:
            return np.arange(self._n_shards)
        return np.random.default_rng([self._seed, self.epoch, 0]).permutation(self._n_shards)

    def _docs_in_order(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if self._order is not None and self._order[0] == shard:
            return self._order[1], self._order[2]
        starts, lengths = self._index.docs(shard)
        keys = starts + (np.int64(shard) << _KEY_SHIFT)
        if self._shuffle:
            perm = np.random.default_rng([self._seed, self.epoch, shard + 1]).permutation(starts.shape[0])
            keys, lengths = keys[perm], lengths[perm]
        self._order = (shard, keys, lengths)
        return keys, lengths

    # -- reading ----------------------------------------------------------------------------------------
    def _load_chunk(self) -> bool:
        """Move the next chunk of documents into the Python lists; False when the stream has ended."""
        while True:
            if self._shard_pos >= self._n_shards:
                self.epoch += 1
                if self._epochs is not None and self.epoch >= self._epochs:
                    self.exhausted = True
                    return False
                self._shard_pos = 0
                self._doc_pos = 0
                self._order = None
                self._shard_order = self._make_shard_order()
            keys, lengths = self._docs_in_order(int(self._shard_order[self._shard_pos]))
            if self._doc_pos < keys.shape[0]:
                end = self._doc_pos + _CHUNK_DOCS
                self._chunk_keys = keys[self._doc_pos : end].tolist()
                self._chunk_lens = lengths[self._doc_pos : end].tolist()
                self._chunk_i = 0
                return True
            self._shard_pos += 1
            self._doc_pos = 0

    def next_doc(self) -> tuple[int, int] | None:
        """(key, length) of the next document, or None when a finite stream has ended."""
        if self._chunk_i >= len(self._chunk_keys):
            if self.exhausted:
                return None
            self._doc_pos += len(self._chunk_keys)
            self._chunk_keys = []
            if not self._load_chunk():
                return None
        i = self._chunk_i
        self._chunk_i = i + 1
        return self._chunk_keys[i], self._chunk_lens[i]

    # -- state ------------------------------------------------------------------------------------------
    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shard_pos": self._shard_pos, "doc_pos": self._doc_pos + self._chunk_i}

    def seek(self, epoch: int, shard_pos: int, doc_pos: int) -> None:
        self.epoch = epoch
        self._shard_order = self._make_shard_order()
        self._order = None
        self._shard_pos = shard_pos
        self._doc_pos = doc_pos
        self._chunk_keys, self._chunk_lens, self._chunk_i = [], [], 0
        self.exhausted = self._epochs is not None and epoch >= self._epochs
        if not self.exhausted:
            self._load_chunk()


class _Packer:
    """Plans rows as (key, length) segments from a buffer of upcoming items (see the module docstring).

    An item is identified by its age ``seq`` (the position of its document in the reading order). Its key
    is ``(shard << 40) | offset`` of its next token for a whole document, ``~((shard << 40) | offset)``
    (negative) for a continuation, whose segment is an inserted BOS followed by tokens from there.
    """

    def __init__(self, stream: _DocStream, row_len: int, buffer_docs: int) -> None:
        self.stream = stream
        self.row_len = row_len
        self.capacity = buffer_docs
        self.order: list[int] = []  # (size << _SEQ_BITS) | seq of the buffered items, ascending
        self.keys: dict[int, int] = {}  # seq -> key of each buffered item
        self.sizes: dict[int, int] = {}  # seq -> size (row tokens it takes) of each buffered item
        self.ages: deque[int] = deque()  # seqs in reading order; entries of finished items are left behind
        self.next_seq = 0
        self.stats = LoaderStats()

    def _refill(self) -> None:
        order, keys, sizes, ages, next_doc = self.order, self.keys, self.sizes, self.ages, self.stream.next_doc
        seq = self.next_seq
        while len(order) < self.capacity:
            doc = next_doc()
            if doc is None:
                break
            key, length = doc
            insort(order, (length << _SEQ_BITS) | seq)  # the newest: after every item of the same size
            keys[seq] = key
            sizes[seq] = length
            ages.append(seq)
            seq += 1
        self.next_seq = seq

    def plan(self, n_rows: int, seg_keys: list[int], seg_lens: list[int]) -> int:
        """Append the segments of up to n_rows complete rows; return how many rows were planned.

        Fewer than n_rows means the stream ended: the segments of the unfinished row are not kept, and the
        rows of this call count as dropped in ``stats`` (callers that need all n_rows lose them).
        """
        order, keys, sizes, ages, stream = self.order, self.keys, self.sizes, self.ages, self.stream
        row_len, capacity = self.row_len, self.capacity
        add_key, add_len = seg_keys.append, seg_lens.append
        used = inserted = pieces = docs = 0  # over the rows of this call
        for done in range(n_rows):
            mark = len(seg_keys)
            remaining = row_len
            while remaining:
                if len(order) < capacity and not stream.exhausted:
                    self._refill()
                if not order:  # the data ran out: the unfinished row is not kept
                    del seg_keys[mark:], seg_lens[mark:]
                    self.stats.tokens_dropped += used
                    self.stats.epoch = stream.epoch
                    return done
                if remaining == row_len:  # the row starts with the oldest item
                    seq = ages[0]
                    while seq not in sizes:
                        ages.popleft()
                        seq = ages[0]
                    j = bisect_left(order, (sizes[seq] << _SEQ_BITS) | seq)
                else:
                    j = bisect_left(order, (remaining + 1) << _SEQ_BITS) - 1
                    if j >= 0:  # the largest item that fits; the oldest of that size
                        size = order[j] >> _SEQ_BITS
                        if j and order[j - 1] >> _SEQ_BITS == size:
                            j = bisect_left(order, size << _SEQ_BITS, 0, j)
                    else:  # nothing fits: crop the smallest item (the oldest of that size)
                        j = 0
                item = order.pop(j)
                seq = item & _SEQ_MASK
                size = item >> _SEQ_BITS
                key = keys[seq]
                if size <= remaining:
                    take = size
                    del keys[seq], sizes[seq]
                    docs += 1
                else:
                    take = remaining
                    left = size - take + 1
                    keys[seq] = ~(key + take) if key >= 0 else key - take + 1  # ~(position of its next token)
                    sizes[seq] = left
                    insort(order, (left << _SEQ_BITS) | seq)
                if key < 0:
                    inserted += 1
                    used += take - 1
                else:
                    used += take
                pieces += 1
                add_key(key)
                add_len(take)
                remaining -= take
        stats = self.stats
        stats.rows += n_rows
        stats.pieces += pieces
        stats.docs += docs
        stats.tokens_used += used
        stats.bos_inserted += inserted
        stats.epoch = stream.epoch
        return n_rows

    # -- state ------------------------------------------------------------------------------------------
    def buffer_state(self) -> dict[str, Any]:
        live = sorted(self.keys)
        return {
            "next_seq": self.next_seq,
            "seqs": live,
            "keys": [self.keys[s] for s in live],
            "sizes": [self.sizes[s] for s in live],
        }

    def load_buffer_state(self, state: dict[str, Any]) -> None:
        seqs = [int(v) for v in state["seqs"]]
        self.keys = dict(zip(seqs, (int(v) for v in state["keys"])))
        self.sizes = dict(zip(seqs, (int(v) for v in state["sizes"])))
        self.order = sorted((self.sizes[s] << _SEQ_BITS) | s for s in seqs)
        self.ages = deque(sorted(seqs))
        self.next_seq = int(state["next_seq"])


class TokenBatches:
    """Iterator over ``(inputs, targets)`` int32 arrays of shape ``(batch_size, seq_len)`` from one split.

    ``epochs``: how many passes over the split before the iterator ends; default: forever for ``train``,
    once for ``val`` and ``test``. ``shuffle``: default True for ``train`` only. ``seed`` only affects
    shuffled splits. ``verify`` checks every file against the manifest's sha256 first (cheap when the
    files are unchanged since the last check, see ``manifest.verify``). Iteration stops, on finite
    passes, when a full batch can no longer be made (the incomplete last batch is dropped).
    """

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        batch_size: int,
        seq_len: int,
        *,
        seed: int = 0,
        verify: bool = True,
        epochs: int | None = None,
        shuffle: bool | None = None,
        buffer_docs: int = DEFAULT_BUFFER_DOCS,
    ) -> None:
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if buffer_docs < 1:
            raise ValueError(f"buffer_docs must be positive, got {buffer_docs}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be positive or None, got {epochs}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if split not in mf.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(mf.SPLITS)}")
        self.data_dir = Path(data_dir)
        self.manifest: Manifest = mf.verify(self.data_dir) if verify else mf.read_manifest(self.data_dir)
        infos = [s for s in self.manifest.splits.get(split, []) if s.tokens > 0]
        if not infos:
            raise DataError(
                f"The prepared data at {self.data_dir} has no {split} tokens. Run {mf.reprepare_hint(self.manifest)}."
            )
        self.split = split
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.bos_id = self.manifest.bos_id
        self.vocab_size = self.manifest.vocab_size
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.epochs = epochs if epochs is not None else (None if split == "train" else 1)
        self.buffer_docs = buffer_docs
        # plain ndarray views of the memory maps: slicing them is cheaper than slicing np.memmap objects
        self._shards = [np.asarray(mf.open_shard(self.data_dir, self.manifest, s)) for s in infos]
        self._files = [s.file for s in infos]
        self._index = _DocIndex(self._shards, self._files, self.bos_id)
        self._packer = self._new_packer()

    def _new_packer(self) -> _Packer:
        stream = _DocStream(
            self._index, len(self._shards), shuffle=self.shuffle, seed=self.seed, epochs=self.epochs
        )
        return _Packer(stream, self.seq_len + 1, self.buffer_docs)

    # -- iteration ------------------------------------------------------------------------------------
    def __iter__(self) -> TokenBatches:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self.next_rows(self.batch_size)
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])

    def next_rows(self, n: int) -> np.ndarray:
        """The next ``n`` packed rows as an int32 array of shape ``(n, seq_len + 1)``.

        Raises StopIteration when the pass has ended before ``n`` complete rows (those rows are lost: their
        tokens count in ``stats.tokens_dropped``).
        """
        seg_keys: list[int] = []
        seg_lens: list[int] = []
        if self._packer.plan(n, seg_keys, seg_lens) < n:
            raise StopIteration
        return self._gather(n, seg_keys, seg_lens)

    def _gather(self, n: int, seg_keys: list[int], seg_lens: list[int]) -> np.ndarray:
        out = np.empty(n * (self.seq_len + 1), dtype=np.int32)
        shards, pos, bos = self._shards, 0, self.bos_id
        for key, length in zip(seg_keys, seg_lens):
            if key >= 0:  # a whole document or the first piece of one: it starts with its own BOS
                start = key & _KEY_MASK
                out[pos : pos + length] = shards[key >> _KEY_SHIFT][start : start + length]
            else:  # a continuation: an inserted BOS, then the document's next length - 1 tokens
                key = ~key
                start = key & _KEY_MASK
                out[pos] = bos
                out[pos + 1 : pos + length] = shards[key >> _KEY_SHIFT][start : start + length - 1]
            pos += length
        return out.reshape(n, self.seq_len + 1)

    def count_rows(self, limit: int) -> int:
        """How many complete rows a fresh pass from the start yields, counting no further than ``limit``.

        Plans without reading tokens (documents are found once per shard and cached); for an endless
        ``train`` stream the answer is ``limit``. It does not move this iterator.
        """
        packer = self._new_packer()
        counted, keys, lens = 0, [], []
        while counted < limit:
            step = min(limit - counted, 1024)
            got = packer.plan(step, keys, lens)
            counted += got
            keys.clear()
            lens.clear()
            if got < step:
                break
        return counted

    # -- statistics and state ---------------------------------------------------------------------------
    @property
    def stats(self) -> LoaderStats:
        """A copy of the counters (rows, pieces, docs, tokens used, BOS inserted, tokens dropped, epoch)."""
        return LoaderStats(**asdict(self._packer.stats))

    def state_dict(self) -> dict[str, Any]:
        """The stream position and the buffered items, pending continuations included (JSON-serialisable).

        ``load_state_dict`` continues from it exactly.
        """
        packer = self._packer
        return {
            "version": _STATE_VERSION,
            "manifest": self.manifest.digest,
            "split": self.split,
            "seq_len": self.seq_len,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "buffer_docs": self.buffer_docs,
            "stream": packer.stream.position(),
            "buffer": packer.buffer_state(),
            "stats": asdict(packer.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict()`` taken from a loader over the same data and settings."""
        mine = self.state_dict()
        for name in ("version", "manifest", "split", "seq_len", "seed", "shuffle", "buffer_docs"):
            if state.get(name) != mine[name]:
                raise ValueError(
                    f"loader state does not match this loader: {name} is {state.get(name)!r}, expected {mine[name]!r}"
                )
        packer = self._new_packer()
        packer.stream.seek(**state["stream"])
        packer.load_buffer_state(state["buffer"])
        packer.stats = LoaderStats(**state["stats"])
        self._packer = packer
