"""val_bpb and the causality check, for PyTorch and MLX, on shards written from a real tiktoken encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _synthetic_data import byte_encoding, encode_docs, random_text, read_docs, token_bytes_of, write_dataset
from torch import nn

from autoresearch.harness import torch_eval as th
from autoresearch.harness.bpb import reference_bpb
from autoresearch.harness.loader import DataError, TokenBatches

MERGES = [b"th", b"he", b"the", b" t", b" the", b"in", b"ing", b"an", b"and", b"\xc3\xa9", b"\xe6\x97", b"\xe6\x97\xa5"]
ENC = byte_encoding(MERGES)
VOCAB = ENC.n_vocab
BOS = VOCAB - 1
SEQ = 32  # one document per row in the "rows" dataset
PAIR_SEQ = 11  # rows of 12 tokens = a 7-token document + a 5-token document in the "pairs" dataset


def cut_docs(rng: np.random.Generator, n: int, length: int) -> list[np.ndarray]:
    """n documents of exactly ``length`` tokens (BOS included) from random text."""
    return [d[:length] for d in encode_docs(ENC, [random_text(rng, 4 * length) for _ in range(n)])]


@pytest.fixture(scope="module")
def rows_data(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    directory = tmp_path_factory.mktemp("rows")
    splits = {"train": cut_docs(rng, 8, SEQ + 1), "val": cut_docs(rng, 12, SEQ + 1), "test": cut_docs(rng, 2, SEQ + 1)}
    write_dataset(directory, splits, vocab_size=VOCAB, bos_id=BOS, token_bytes=token_bytes_of(ENC), encoding=ENC)
    return directory


@pytest.fixture(scope="module")
def pairs_data(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(1)
    directory = tmp_path_factory.mktemp("pairs")
    long, short = cut_docs(rng, 10, 7), cut_docs(rng, 10, 5)
    val = [d for pair in zip(long, short) for d in pair]
    write_dataset(
        directory, {"train": val, "val": val}, vocab_size=VOCAB, bos_id=BOS, token_bytes=token_bytes_of(ENC),
        encoding=ENC,
    )
    return directory


def expected_uniform_bpb(directory, row_len: int) -> tuple[float, float]:
    """(bpb, bpb if BOS targets were wrongly counted) of a uniform model over a split whose rows use every token.

    Computed from the shards read with plain numpy and byte lengths straight from tiktoken.
    """
    docs = read_docs(directory, "val")
    counted = sum(len(d) - 1 for d in docs)  # every token but BOS is a target somewhere
    nbytes = sum(len(ENC.decode_single_token_bytes(int(t))) for d in docs for t in d[1:])
    assert nbytes > counted, "the test data has multi-byte tokens"
    rows = sum(len(d) for d in docs) // row_len
    bos_targets = len(docs) - rows  # BOS of every document that does not start a row
    return counted * math.log2(VOCAB) / nbytes, (counted + bos_targets) * math.log2(VOCAB) / nbytes


# -- models -------------------------------------------------------------------------------------------------
class Uniform(nn.Module):
    def __init__(self, width: int = VOCAB, fill: float = 0.0) -> None:
        super().__init__()
        self.width, self.fill = width, fill
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return torch.full((*x.shape, self.width), self.fill)


class Bigram(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(VOCAB, width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x))


class CumulativeMean(nn.Module):
    """Causal: position t sees the mean of the embeddings of tokens 0..t."""

    def __init__(self, vocab: int = VOCAB, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x).cumsum(dim=1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        return self.head(h)


class NextTokenLeak(CumulativeMean):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x) + self.emb(torch.roll(x, -1, dims=1)))


class LastTokenLeak(CumulativeMean):
    """Leaks only a little, and only from the last token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.05 * self.head(self.emb(x[:, -1:]))


class TinyTransformer(nn.Module):
    def __init__(self, causal: bool, vocab: int = VOCAB, width: int = 32, seq_len: int = 64) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.causal = causal
        self.emb = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq_len, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.drop = nn.Dropout(0.5)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos(torch.arange(x.shape[1]))
        q, k, v = (t.view(x.shape[0], x.shape[1], 2, -1).transpose(1, 2) for t in self.qkv(h).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        h = h + self.drop(a.transpose(1, 2).reshape(h.shape))
        h = h + self.mlp(h)
        return self.head(h)


# -- val_bpb (torch) ----------------------------------------------------------------------------------------
def evaluate(model, directory, seq_len=SEQ, eval_tokens=None, batch_size=5, **kwargs) -> float:
    if eval_tokens is None:
        eval_tokens = 12 * SEQ if seq_len == SEQ else 10 * PAIR_SEQ
    return th.evaluate_bpb(
        model, directory, seq_len=seq_len, eval_tokens=eval_tokens, batch_size=batch_size, device="cpu", **kwargs
    )


def test_uniform_model_gives_log2_vocab_per_byte(rows_data):
    expected, _ = expected_uniform_bpb(rows_data, SEQ + 1)
    assert evaluate(Uniform(), rows_data) == pytest.approx(expected, rel=1e-6)
    # extra (padded) vocabulary columns are ignored
    assert evaluate(Uniform(VOCAB + 7), rows_data) == pytest.approx(expected, rel=1e-6)


def test_special_token_targets_are_excluded(pairs_data):
    expected, with_bos = expected_uniform_bpb(pairs_data, PAIR_SEQ + 1)
    got = evaluate(Uniform(), pairs_data, seq_len=PAIR_SEQ)
    assert got == pytest.approx(expected, rel=1e-6)
    assert abs(got - with_bos) > 1e-3


def test_matches_numpy_reference_and_batch_size(rows_data):
    model = Bigram()
    n_rows = 10
    rows = TokenBatches(rows_data, "val", 1, SEQ).next_rows(n_rows)
    with torch.no_grad():
        logits = model(torch.from_numpy(rows[:, :-1]).long()).numpy()
    token_bytes = token_bytes_of(ENC)
    expected = reference_bpb(logits, rows[:, 1:], token_bytes)
    for batch_size in (3, 4, 10):
        got = evaluate(model, rows_data, eval_tokens=n_rows * SEQ + SEQ - 1, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-5)


def test_autocast_bfloat16(rows_data):
    model = Bigram()
    full = evaluate(model, rows_data)
    low = evaluate(model, rows_data, autocast_dtype=torch.bfloat16)
    assert math.isfinite(low) and low == pytest.approx(full, rel=2e-2)


def test_restores_modes_and_runs_in_eval(rows_data):
    model = Uniform()
    model.child = nn.Linear(2, 2)
    model.train()
    model.child.eval()
    evaluate(model, rows_data)
    assert model.seen_training and not any(model.seen_training)
    assert model.training and not model.child.training


def test_non_finite_logits_give_nan(rows_data):
    assert math.isnan(evaluate(Uniform(fill=float("nan")), rows_data))

    class OneInf(Uniform):
        def forward(self, x):
            out = super().forward(x)
            out[0, 3, 5] = float("inf")
            return out

    assert math.isnan(evaluate(OneInf(), rows_data))


@pytest.mark.parametrize(
    "output, match",
    [
        (lambda x: torch.zeros(*x.shape), r"shape \(5, 32\)"),
        (lambda x: torch.zeros(*x.shape, VOCAB - 1), "vocab"),
        (lambda x: torch.zeros(x.shape[0], x.shape[1] - 1, VOCAB), "shape"),
        (lambda x: (torch.zeros(*x.shape, VOCAB), torch.tensor(0.0)), "tuple"),
    ],
)
def test_wrong_output_raises_a_clear_error(rows_data, output, match):
    with pytest.raises(th.LogitsError, match=match):
        evaluate(output, rows_data)


def test_too_small_split_is_refused(rows_data):
    with pytest.raises(DataError, match="too small"):
        evaluate(Uniform(), rows_data, eval_tokens=13 * SEQ)
    with pytest.raises(DataError, match="test split is too small"):
        evaluate(Uniform(), rows_data, split="test")
    with pytest.raises(ValueError):
        evaluate(Uniform(), rows_data, eval_tokens=SEQ - 1)


# -- causality (torch) --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [CumulativeMean(), TinyTransformer(causal=True)], ids=["cummean", "transformer"])
def test_causal_models_pass(model):
    model.train()
    result = th.check_causality(model, VOCAB, 64, "cpu")
    assert result.ok, result.message
    assert result.position == -1 and result.max_diff < 1e-4
    assert model.training and model.drop.training if hasattr(model, "drop") else model.training


@pytest.mark.parametrize(
    "model", [NextTokenLeak(), LastTokenLeak(), TinyTransformer(causal=False)], ids=["next", "last", "unmasked"]
)
def test_leaking_models_fail(model):
    result = th.check_causality(model, VOCAB, 64, "cpu")
    assert not result.ok
    assert "sees the future" in result.message
    assert 0 <= result.position < 63 and result.max_diff > 0


def test_causality_under_bfloat16_autocast():
    assert th.check_causality(TinyTransformer(True), VOCAB, 64, "cpu", autocast_dtype=torch.bfloat16).ok
    assert not th.check_causality(TinyTransformer(False), VOCAB, 64, "cpu", autocast_dtype=torch.bfloat16).ok


def test_causality_reports_the_earliest_changed_position():
    result = th.check_causality(NextTokenLeak(), VOCAB, 16, "cpu", positions=[9])
    assert not result.ok and result.position == 9  # position 9 sees token 10
    with pytest.raises(ValueError):
        th.check_causality(CumulativeMean(), VOCAB, 16, "cpu", positions=[15])


# -- MLX ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlxh():
    return pytest.importorskip("autoresearch.harness.mlx_eval", reason="mlx is not installed")


@pytest.mark.mlx
def test_mlx_uniform_and_special_tokens(mlxh, rows_data, pairs_data):
    import mlx.core as mx

    def uniform(x):
        return mx.zeros((*x.shape, VOCAB + 3))

    expected, _ = expected_uniform_bpb(rows_data, SEQ + 1)
    got = mlxh.evaluate_bpb(uniform, rows_data, seq_len=SEQ, eval_tokens=12 * SEQ, batch_size=5)
    assert got == pytest.approx(expected, rel=1e-6)
    assert got == pytest.approx(evaluate(Uniform(), rows_data), rel=1e-6)
    expected, _ = expected_uniform_bpb(pairs_data, PAIR_SEQ + 1)
    got = mlxh.evaluate_bpb(uniform, pairs_data, seq_len=PAIR_SEQ, eval_tokens=10 * PAIR_SEQ, batch_size=4)
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.mlx
def test_mlx_matches_reference_restores_mode_and_validates(mlxh, rows_data):
    import mlx.core as mx
    import mlx.nn as mnn

    class MBigram(mnn.Module):
        def __init__(self):
            super().__init__()
            self.emb = mnn.Embedding(VOCAB, 16)
            self.head = mnn.Linear(16, VOCAB)
            self.seen: list[bool] = []

        def __call__(self, x):
            self.seen.append(self.training)
            return self.head(self.emb(x))

    mx.random.seed(0)
    model = MBigram()
    rows = TokenBatches(rows_data, "val", 1, SEQ).next_rows(12)
    logits = np.array(model(mx.array(rows[:, :-1])))
    expected = reference_bpb(logits, rows[:, 1:], token_bytes_of(ENC))
    model.train()
    model.seen.clear()
    got = mlxh.evaluate_bpb(model, rows_data, seq_len=SEQ, eval_tokens=12 * SEQ, batch_size=5)
    assert got == pytest.approx(expected, rel=1e-5)
    assert model.training and model.seen and not any(model.seen)
    nan = mlxh.evaluate_bpb(
        lambda x: mx.full((*x.shape, VOCAB), float("nan")), rows_data, seq_len=SEQ, eval_tokens=SEQ, batch_size=1
    )
    assert math.isnan(nan)
    with pytest.raises(mlxh.LogitsError, match="shape"):
        mlxh.evaluate_bpb(lambda x: mx.zeros(x.shape), rows_data, seq_len=SEQ, eval_tokens=SEQ, batch_size=1)


@pytest.mark.mlx
def test_mlx_causality(mlxh):
    import mlx.core as mx
    import mlx.nn as mnn

    class MCumMean(mnn.Module):
        def __init__(self, leak: bool = False):
            super().__init__()
            self.emb = mnn.Embedding(VOCAB, 16)
            self.head = mnn.Linear(16, VOCAB)
            self.leak = leak

        def __call__(self, x):
            e = self.emb(x)
            if self.leak:
                return self.head(e + mx.roll(e, -1, axis=1))
            return self.head(mx.cumsum(e, axis=1) / mx.arange(1, x.shape[1] + 1).reshape(1, -1, 1))

    class MAttention(mnn.Module):
        def __init__(self, causal: bool):
            super().__init__()
            self.emb = mnn.Embedding(VOCAB, 32)
            self.attn = mnn.MultiHeadAttention(32, 2)
            self.head = mnn.Linear(32, VOCAB)
            self.causal = causal

        def __call__(self, x):
            h = self.emb(x)
            mask = mnn.MultiHeadAttention.create_additive_causal_mask(x.shape[1]) if self.causal else None
            return self.head(h + self.attn(h, h, h, mask=mask))

    mx.random.seed(0)
    causal = MCumMean()
    causal.train()
    assert mlxh.check_causality(causal, VOCAB, 64).ok and causal.training
    assert mlxh.check_causality(MAttention(causal=True), VOCAB, 64).ok
    for leaky in (MCumMean(leak=True), MAttention(causal=False)):
        result = mlxh.check_causality(leaky, VOCAB, 64)
        assert not result.ok and "sees the future" in result.message
