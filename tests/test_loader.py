"""The numpy loader and its torch/mlx wrappers, on real shards written with the manifest helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _synthetic_data import numbered_docs, random_docs, read_docs, write_dataset

from autoresearch.harness import manifest as mf
from autoresearch.harness.loader import DataError, TokenBatches

VOCAB = 1000
BOS = VOCAB - 1
# the "numbered" dataset: every non-BOS token of a split is distinct, so it tells its document and position
NUM_VOCAB = 1 << 16
NUM_BOS = NUM_VOCAB - 1


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    directory = tmp_path_factory.mktemp("data")
    splits = {
        "train": random_docs(rng, 600, VOCAB, BOS, 2, 300),
        "val": random_docs(rng, 150, VOCAB, BOS, 2, 300),
        "test": random_docs(rng, 50, VOCAB, BOS, 2, 300),
    }
    write_dataset(
        directory, splits, vocab_size=VOCAB, bos_id=BOS, token_bytes=np.ones(VOCAB, np.int32), shard_tokens=20_000
    )
    return directory


@pytest.fixture(scope="module")
def numbered(tmp_path_factory: pytest.TempPathFactory):
    """Mostly documents much longer than the rows of the tests (up to 3000 tokens), some short ones."""
    rng = np.random.default_rng(1)
    directory = tmp_path_factory.mktemp("numbered")
    splits = {}
    for split, n in (("train", 30), ("val", 30), ("test", 5)):
        lengths = np.where(rng.random(n) < 0.2, rng.integers(2, 40, n), rng.integers(300, 3000, n))
        splits[split] = numbered_docs(lengths.tolist(), NUM_BOS)
    token_bytes = np.ones(NUM_VOCAB, np.int32)
    token_bytes[NUM_BOS] = 0
    write_dataset(
        directory, splits, vocab_size=NUM_VOCAB, bos_id=NUM_BOS, token_bytes=token_bytes, shard_tokens=10_000
    )
    return directory


def take(loader: TokenBatches, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [next(loader) for _ in range(n)]


def all_rows(loader: TokenBatches) -> np.ndarray:
    """Every row of a finite pass, batch after batch."""
    return np.concatenate([np.concatenate([x, y[:, -1:]], axis=1) for x, y in loader])


def pieces_of(rows: np.ndarray, docs: list[np.ndarray]) -> tuple[list[list[tuple[int, int]]], int]:
    """Check the structure of numbered rows; return each document's pieces and the number of lone BOS.

    Every row starts with BOS; every token after a BOS up to the next BOS or the row end continues the same
    document at consecutive positions (so nothing else, no padding, is in a row). A piece is the
    (start, end) span of document positions after its BOS, in order of appearance.
    """
    owner = np.full(NUM_VOCAB, -1)
    position = np.full(NUM_VOCAB, -1)
    for i, d in enumerate(docs):
        owner[d[1:]] = i
        position[d[1:]] = np.arange(1, len(d))
    pieces: list[list[tuple[int, int]]] = [[] for _ in docs]
    lone_bos = 0
    assert np.all(rows[:, 0] == NUM_BOS), "every row starts with BOS"
    for row in rows:
        starts = np.flatnonzero(row == NUM_BOS)
        for a, b in zip(starts, list(starts[1:]) + [len(row)]):
            body = row[a + 1 : b]
            if body.size == 0:
                lone_bos += 1
                continue
            doc = owner[body[0]]
            assert doc >= 0 and np.all(owner[body] == doc), "a piece holds tokens of one document only"
            first = position[body[0]]
            np.testing.assert_array_equal(position[body], np.arange(first, first + body.size), "contiguous")
            pieces[doc].append((int(first), int(first + body.size)))
    return pieces, lone_bos


def test_shapes_dtype_and_shift(data):
    loader = TokenBatches(data, "train", 4, 64, seed=1)
    for x, y in take(loader, 5):
        assert x.shape == y.shape == (4, 64)
        assert x.dtype == y.dtype == np.int32
        assert x.flags.c_contiguous and y.flags.c_contiguous
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    rows = TokenBatches(data, "train", 4, 64, seed=1).next_rows(4)
    first_x, first_y = next(TokenBatches(data, "train", 4, 64, seed=1))
    np.testing.assert_array_equal(first_x, rows[:, :-1])
    np.testing.assert_array_equal(first_y, rows[:, 1:])


@pytest.mark.parametrize(
    "split,seq_len,batch_size,buffer_docs",
    [("val", 16, 1, 1000), ("val", 100, 3, 1000), ("val", 255, 2, 4), ("train", 64, 4, 1000), ("train", 511, 1, 7)],
)
def test_every_token_of_every_document_in_order_in_bos_prefixed_pieces(
    numbered, split, seq_len, batch_size, buffer_docs
):
    docs = read_docs(numbered, split)
    assert sum(len(d) > 4 * (seq_len + 1) for d in docs) >= 5, "documents much longer than a row"
    loader = TokenBatches(numbered, split, batch_size, seq_len, seed=5, epochs=1, buffer_docs=buffer_docs)
    rows = all_rows(loader)
    assert rows.shape[1] == seq_len + 1 and rows.min() >= 0 and rows.max() < NUM_VOCAB
    pieces, lone_bos = pieces_of(rows, docs)
    stats = loader.stats
    for doc, spans in zip(docs, pieces):
        if spans:  # the pieces of a document follow each other: every token once, in order, from the first
            assert spans[0][0] == 1
            assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))
            assert spans[-1][1] <= len(doc)
    finished = sum(bool(spans) and spans[-1][1] == len(doc) for doc, spans in zip(docs, pieces))
    assert finished >= len(docs) - 2, "only documents in the unfinished last batch are incomplete"
    # tokens placed: each started document's own BOS and its pieces' tokens; a piece made of a document's own
    # BOS alone (a crop to one token) is indistinguishable from an inserted BOS with no token after it
    placed = sum(spans[-1][1] for spans in pieces if spans)
    assert placed <= stats.tokens_used <= placed + lone_bos
    assert int(np.sum(rows == NUM_BOS)) == sum(len(s) for s in pieces) + lone_bos
    assert stats.rows == len(rows)
    assert stats.tokens_used + stats.bos_inserted == rows.size, "no padding"
    total = sum(len(d) for d in docs)
    assert stats.tokens_used + stats.tokens_dropped == total, "every token is used or counted as dropped"
    assert stats.tokens_dropped < batch_size * (seq_len + 1), "only the unfinished last batch is lost"
    assert stats.utilization >= 0.99
    assert stats.bos_inserted >= sum(max(len(s) - 1, 0) for s in pieces)
    if split == "val":  # read in order, and every row starts with the oldest item: row starts ascend
        owner = np.full(NUM_VOCAB, -1)
        for i, doc in enumerate(docs):
            owner[doc[1:]] = i
        first_docs = [owner[row[1]] for row in rows if row[1] != NUM_BOS]
        assert first_docs == sorted(first_docs)
        assert len(first_docs) >= len(rows) - 2


@pytest.mark.parametrize("split,seq_len", [("train", 16), ("train", 200), ("val", 100)])
def test_rows_start_with_bos_and_have_no_padding(data, split, seq_len):
    loader = TokenBatches(data, split, 8, seq_len, seed=3)
    for _ in range(6):
        rows = loader.next_rows(8)
        assert rows.shape == (8, seq_len + 1)
        assert np.all(rows[:, 0] == BOS), "every row starts with BOS"
        assert rows.min() >= 0 and rows.max() < VOCAB
    stats = loader.stats
    assert stats.tokens_used + stats.bos_inserted == stats.rows * (seq_len + 1), "no padding"
    assert stats.tokens_dropped == 0 and stats.utilization == 1.0


def test_packing_rule_exact(tmp_path):
    # sizes 23, 3, 4, 5, 7, 9, 8 in file order, rows of 10 tokens (seq_len 9); doc n holds 100 n + 1, ...
    sizes = [23, 3, 4, 5, 7, 9, 8]
    a, b, c, d, e, f, g = docs = [
        np.array([BOS] + [100 * n + j for j in range(1, size)]) for n, size in enumerate(sizes)
    ]
    write_dataset(tmp_path, {"val": docs}, vocab_size=VOCAB, bos_id=BOS, token_bytes=np.ones(VOCAB, np.int32))
    loader = TokenBatches(tmp_path, "val", 1, 9)
    rows = [loader.next_rows(1)[0] for _ in range(6)]
    expected = [
        a[:10],  # the oldest item starts the row; longer than a row: cropped to it
        np.concatenate([[BOS], a[10:19]]),  # its continuation starts the next row, after an inserted BOS
        np.concatenate([[BOS], a[19:], d]),  # the rest of it fits (5), then the largest that fits: d (5)
        np.concatenate([b, e]),  # oldest: b (3), then the largest that fits in 7: e (7)
        np.concatenate([c, g[:6]]),  # oldest: c (4); neither f (9) nor g (8) fits in 6: the smaller, g, is cropped
        np.concatenate([f, [BOS]]),  # oldest: f (9); g's rest (2 tokens + BOS) does not fit in 1: crop to a BOS
    ]
    for row, want in zip(rows, expected):
        np.testing.assert_array_equal(row, want)
    with pytest.raises(StopIteration):  # g's last 2 tokens (+ BOS) cannot make a full row: dropped
        loader.next_rows(1)
    stats = loader.stats
    assert (stats.rows, stats.pieces, stats.docs) == (6, 10, 6)
    assert (stats.tokens_used, stats.bos_inserted, stats.tokens_dropped) == (sum(sizes) - 2, 3, 2)
    assert stats.utilization == pytest.approx((sum(sizes) - 2) / sum(sizes))


def test_ties_go_to_the_oldest(tmp_path):
    sizes = [4, 3, 3, 3, 5, 5]  # rows of 7 tokens
    a, b, c, d, e, f = docs = [np.array([BOS] + [100 * n + j for j in range(1, s)]) for n, s in enumerate(sizes)]
    write_dataset(tmp_path, {"val": docs}, vocab_size=VOCAB, bos_id=BOS, token_bytes=np.ones(VOCAB, np.int32))
    loader = TokenBatches(tmp_path, "val", 1, 6)
    rows = loader.next_rows(3)
    np.testing.assert_array_equal(rows[0], np.concatenate([a, b]))  # b: the oldest of the three that fit
    np.testing.assert_array_equal(rows[1], np.concatenate([c, d, e[:1]]))  # e, f (5) do not fit in 1: e is cropped
    np.testing.assert_array_equal(rows[2], np.concatenate([[BOS], e[1:], f[:2]]))
    with pytest.raises(StopIteration):
        loader.next_rows(1)
    assert loader.stats.tokens_dropped == 3 and loader.stats.bos_inserted == 1


def test_same_seed_same_batches_and_other_seed_differs(data):
    a = take(TokenBatches(data, "train", 4, 128, seed=7), 5)
    b = take(TokenBatches(data, "train", 4, 128, seed=7), 5)
    c = take(TokenBatches(data, "train", 4, 128, seed=8), 5)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_val_is_deterministic_in_order_and_independent_of_seed_and_batch_size(data):
    a = np.concatenate([x for x, _ in TokenBatches(data, "val", 4, 96, seed=0)])
    b = np.concatenate([x for x, _ in TokenBatches(data, "val", 4, 96, seed=123)])
    np.testing.assert_array_equal(a, b)
    loader = TokenBatches(data, "val", 3, 96)
    c = np.concatenate([loader.next_rows(1)[:, :-1] for _ in range(len(a))])
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("seq_len", [20, 80, 300])
def test_val_pass_ends_and_count_rows_matches(data, seq_len):
    loader = TokenBatches(data, "val", 1, seq_len)
    n = 0
    while True:
        try:
            loader.next_rows(1)
        except StopIteration:
            break
        n += 1
    assert TokenBatches(data, "val", 1, seq_len).count_rows(10**9) == n
    assert TokenBatches(data, "val", 1, seq_len).count_rows(5) == 5
    assert sum(1 for _ in TokenBatches(data, "val", 7, seq_len)) == n // 7
    stats = loader.stats
    total = sum(len(d) for d in read_docs(data, "val"))
    assert stats.rows == n
    assert stats.tokens_used + stats.bos_inserted == n * (seq_len + 1)
    assert stats.tokens_used + stats.tokens_dropped == total, "every val token is either used or dropped"
    assert 0 < stats.tokens_dropped < seq_len + 1, "only the unfinished last row is lost"
    assert stats.docs >= 149
    assert stats.utilization >= 1 - (seq_len + 1) / total


def test_train_loops_over_epochs_with_a_new_order(tmp_path):
    # doc i is [BOS, i + 1, tokens >= 100]: with a one-document buffer and rows of 2 tokens, a document fills
    # len - 1 consecutive rows ([BOS, token] each), and the rows whose target is <= 50 show the reading order
    rng = np.random.default_rng(4)
    docs = [np.concatenate([[BOS, i + 1], rng.integers(100, BOS, int(rng.integers(0, 30)))]) for i in range(50)]
    write_dataset(
        tmp_path, {"train": docs}, vocab_size=VOCAB, bos_id=BOS, token_bytes=np.ones(VOCAB, np.int32), shard_tokens=200
    )
    assert len(mf.read_manifest(tmp_path).splits["train"]) > 3
    loader = TokenBatches(tmp_path, "train", 1, 1, seed=0, epochs=3, buffer_docs=1)
    targets = [int(y[0, 0]) for x, y in loader if x[0, 0] == BOS]
    assert len(targets) == 3 * sum(len(d) - 1 for d in docs), "every token of every epoch, no row lost"
    order = [t - 1 for t in targets if t <= 50]
    assert len(order) == 150
    epochs = [order[0:50], order[50:100], order[100:150]]
    for e in epochs:
        assert sorted(e) == list(range(50)), "each epoch reads every document once"
    assert epochs[0] != epochs[1] != epochs[2] != list(range(50)), "a new shuffled order every epoch"
    again = [int(y[0, 0]) for _, y in TokenBatches(tmp_path, "train", 1, 1, seed=0, epochs=3, buffer_docs=1)]
    assert again == targets
    endless = TokenBatches(tmp_path, "train", 4, 50, seed=0)
    for _ in range(200):
        next(endless)
    assert endless.stats.epoch >= 2


@pytest.mark.parametrize("fixture,split,seq_len", [("data", "train", 64), ("numbered", "train", 100)])
def test_state_dict_round_trip(request, fixture, split, seq_len):
    directory = request.getfixturevalue(fixture)
    loader = TokenBatches(directory, split, 4, seq_len, seed=2)
    take(loader, 7)
    state = json.loads(json.dumps(loader.state_dict()))
    assert any(k < 0 for k in state["buffer"]["keys"]), "a pending continuation is part of the state"
    expected = take(loader, 40)
    resumed = TokenBatches(directory, split, 4, seq_len, seed=2)
    resumed.load_state_dict(state)
    for (x, y), (x2, y2) in zip(expected, take(resumed, 40)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert resumed.stats == loader.stats
    other = TokenBatches(directory, split, 4, seq_len, seed=3)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        resumed.load_state_dict({**state, "version": 1})


def _flip_byte(path, offset=10):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_tampered_shard_is_refused(tmp_path):
    rng = np.random.default_rng(5)
    write_dataset(
        tmp_path, {"train": random_docs(rng, 20, VOCAB, BOS, 5, 50)}, vocab_size=VOCAB, bos_id=BOS,
        token_bytes=np.ones(VOCAB, np.int32),
    )
    _flip_byte(tmp_path / "train_0000.bin")
    with pytest.raises(DataError, match="checksum"):
        TokenBatches(tmp_path, "train", 2, 16)


def test_tampered_shard_is_refused_after_a_cached_verification(tmp_path):
    rng = np.random.default_rng(6)
    write_dataset(
        tmp_path, {"train": random_docs(rng, 20, VOCAB, BOS, 5, 50)}, vocab_size=VOCAB, bos_id=BOS,
        token_bytes=np.ones(VOCAB, np.int32),
    )
    TokenBatches(tmp_path, "train", 2, 16)  # verifies and leaves the stamp
    shard = tmp_path / "train_0000.bin"
    before = shard.stat().st_mtime_ns
    _flip_byte(shard)
    # file timestamps come from a coarse clock: make sure the modification is visible to the stamp check
    os.utime(shard, ns=(before + 1_000_000_000, before + 1_000_000_000))
    with pytest.raises(DataError, match="checksum"):
        TokenBatches(tmp_path, "train", 2, 16)
    TokenBatches(tmp_path, "train", 2, 16, verify=False)  # explicitly unverified use is still possible


def test_shard_not_starting_with_bos_is_malformed(tmp_path):
    rng = np.random.default_rng(7)
    write_dataset(
        tmp_path, {"train": random_docs(rng, 5, VOCAB, BOS, 5, 50)}, vocab_size=VOCAB, bos_id=BOS,
        token_bytes=np.ones(VOCAB, np.int32),
    )
    manifest = mf.read_manifest(tmp_path)
    shard = tmp_path / "train_0000.bin"
    tokens = np.fromfile(shard, dtype="<u2")
    np.roll(tokens, 1).tofile(shard)
    manifest.splits["train"][0].sha256 = mf.sha256_file(shard)
    manifest.write(tmp_path)
    with pytest.raises(DataError, match="BOS"):
        next(TokenBatches(tmp_path, "train", 2, 16))


def test_bad_arguments(data, tmp_path):
    with pytest.raises(ValueError):
        TokenBatches(data, "train", 0, 16)
    with pytest.raises(ValueError):
        TokenBatches(data, "dev", 2, 16)
    with pytest.raises(DataError, match="prepare"):
        TokenBatches(tmp_path, "train", 2, 16)


def test_torch_and_mlx_loaders_yield_identical_batches(data):
    torch_h = pytest.importorskip("autoresearch.harness.torch_eval")
    ref = take(TokenBatches(data, "train", 4, 100, seed=11), 3)
    tb = torch_h.batches(data, "train", 4, 100, "cpu", seed=11)
    got_torch = take(tb, 3)
    for (x, y), (xt, yt) in zip(ref, got_torch):
        assert xt.dtype == yt.dtype == torch_h.torch.int64
        assert xt.is_contiguous() and yt.is_contiguous()
        np.testing.assert_array_equal(x, xt.numpy())
        np.testing.assert_array_equal(y, yt.numpy())
    assert tb.stats.rows == 12
    try:
        mlx_h = __import__("autoresearch.harness.mlx_eval", fromlist=["batches"])
    except ImportError:
        pytest.skip("mlx is not installed")
    got_mlx = take(mlx_h.batches(data, "train", 4, 100, seed=11), 3)
    for (xt, yt), (xm, ym) in zip(got_torch, got_mlx):
        assert xm.shape == (4, 100)
        np.testing.assert_array_equal(xt.numpy(), np.array(xm))
        np.testing.assert_array_equal(yt.numpy(), np.array(ym))


def test_harness_imports_without_mlx_and_the_mlx_module_says_how_to_install():
    code = (
        "import sys\n"
        "sys.modules['mlx'] = None\n"
        "sys.modules['mlx.core'] = None\n"
        "import autoresearch.harness, autoresearch.harness.loader, autoresearch.harness.bpb\n"
        "import autoresearch.harness.causality\n"
        "assert 'torch' not in sys.modules, 'the backend-neutral harness must not import torch'\n"
        "try:\n"
        "    import autoresearch.harness.mlx\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('imported without mlx')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'autoresearch[cpu]'" in out.stdout and "pip install mlx" in out.stdout
