"""Batch-assembly throughput of the harness loaders on one CPU core.

Builds a synthetic prepared dataset (real shards and manifest, vocab 8192, log-normal document lengths
with a median of about 500 tokens: most documents a few hundred to a few thousand tokens) in a temporary
directory, then measures tokens per second of (inputs, targets) batches from the numpy core, the PyTorch
wrapper (CPU tensors) and the MLX wrapper, at (B, T) = (128, 2048) (upstream's H200 configuration) and
(32, 256) (the CPU profile). It also reports the packing: inserted BOS tokens per row (one before every
continuation piece of a cropped document), pieces per finished document, and the utilization (fraction of
the document tokens read that end up in rows: 1.0 on an endless stream; on a finite pass only the
unfinished last row is lost), measured on the first 200 batches of the train stream and on a full val pass
read row by row (as the evaluation does; a batch loader also loses the incomplete last batch).

    python benchmarks/loader.py [--tokens 80000000] [--seconds 3] [--dir PATH --keep]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / torch are imported

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch.harness import manifest as mf  # noqa: E402
from autoresearch.harness.loader import TokenBatches  # noqa: E402

VOCAB = 8192
BOS = VOCAB - 1
CONFIGS = ((128, 2048), (32, 256))


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity here); thread pools limited to 1"


def write_split(
    directory: Path, split: str, tokens: int, shard_tokens: int, rng: np.random.Generator
) -> list[mf.ShardInfo]:
    infos: list[mf.ShardInfo] = []
    left = tokens
    while left > 0:
        size = min(shard_tokens, left)
        lengths = np.clip(rng.lognormal(np.log(500), 1.0, size // 100 + 16), 8, 16384).astype(np.int64)
        lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), size)) + 1]
        lengths[-1] -= int(lengths.sum()) - size  # the shard holds exactly `size` tokens
        lengths = lengths[lengths > 0]
        shard = rng.integers(0, BOS, size, dtype=np.uint16)
        shard[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = BOS
        name = f"{split}_{len(infos):04d}.bin"
        shard.astype("<u2").tofile(directory / name)
        infos.append(mf.ShardInfo(name, size, len(lengths), mf.sha256_file(directory / name)))
        left -= size
    return infos


def build_dataset(directory: Path, train_tokens: int) -> mf.Manifest:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / mf.TOKENIZER_NAME).write_text(json.dumps({"name": "synthetic-benchmark"}))
    token_bytes = rng.integers(1, 9, VOCAB).astype(np.int32)
    token_bytes[BOS] = 0
    np.save(directory / mf.TOKEN_BYTES_NAME, token_bytes)
    splits = {
        "train": write_split(directory, "train", train_tokens, 1 << 24, rng),
        "val": write_split(directory, "val", 2_000_000, 1 << 24, rng),
    }
    manifest = mf.Manifest(
        dataset="synthetic-benchmark",
        vocab_size=VOCAB,
        bos_id=BOS,
        dtype=mf.shard_dtype(VOCAB),
        splits=splits,
        tokenizer_sha256=mf.sha256_file(directory / mf.TOKENIZER_NAME),
        token_bytes_sha256=mf.sha256_file(directory / mf.TOKEN_BYTES_NAME),
    )
    manifest.write(directory)
    return manifest


def measure(make: Callable[[], Iterator], batch_tokens: int, seconds: float) -> tuple[float, int]:
    it = make()
    for _ in range(3):  # warm up: document scan of the first shards, first page faults
        next(it)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(8):
            next(it)
        n += 8
    return n * batch_tokens / elapsed, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=80_000_000, help="train tokens to generate")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--dir", type=Path, default=None, help="dataset directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the dataset directory")
    args = parser.parse_args()

    print(pin_to_one_core())
    directory = args.dir or Path(tempfile.mkdtemp(prefix="autoresearch-bench-"))
    try:
        if not (directory / mf.MANIFEST_NAME).exists():
            t0 = time.perf_counter()
            manifest = build_dataset(directory, args.tokens)
            print(f"built {manifest.split_tokens('train') / 1e6:.0f}M train tokens in "
                  f"{sum(s.docs for s in manifest.splits['train'])} documents at {directory} "
                  f"({time.perf_counter() - t0:.1f}s)")
        for label, use_cache in (("first verification (hashes everything)", False), ("cached verification", True)):
            t0 = time.perf_counter()
            mf.verify(directory, use_cache=use_cache)
            print(f"{label}: {time.perf_counter() - t0:.3f}s")
        t0 = time.perf_counter()
        next(TokenBatches(directory, "train", 1, 16))
        print(f"loader construction + first batch (scans its first shards for documents): "
              f"{time.perf_counter() - t0:.3f}s")

        makers: list[tuple[str, Callable[[int, int], Iterator]]] = [
            ("numpy", lambda b, t: TokenBatches(directory, "train", b, t, seed=1)),
        ]
        try:
            import torch

            from autoresearch.harness import torch_eval as th

            torch.set_num_threads(1)
            makers.append(("torch (cpu)", lambda b, t: th.batches(directory, "train", b, t, "cpu", seed=1)))
        except ImportError as e:
            print(f"torch wrapper skipped: {e}")
        try:
            import mlx.core as mx

            from autoresearch.harness import mlx_eval as mh

            def mlx_batches(b: int, t: int) -> Iterator:
                for x, y in mh.batches(directory, "train", b, t, seed=1):
                    mx.eval(x, y)
                    yield x, y

            makers.append(("mlx", mlx_batches))
        except ImportError as e:
            print(f"mlx wrapper skipped: {e}")

        print(f"\n{'loader':<12} {'B':>4} {'T':>5} {'Mtok/s':>8} {'batches':>8}")
        for b, t in CONFIGS:
            for name, make in makers:
                rate, n = measure(lambda: make(b, t), b * t, args.seconds)
                print(f"{name:<12} {b:>4} {t:>5} {rate / 1e6:>8.1f} {n:>8}")

        print(f"\n{'packing':<22} {'B':>4} {'T':>5} {'rows':>7} {'BOS ins./row':>13} {'pieces/doc':>11} "
              f"{'utilization':>12}")
        for b, t in CONFIGS:
            for label, loader, batches in (
                ("train, 200 batches", TokenBatches(directory, "train", b, t, seed=1), 200),
                ("val, full pass (rows)", TokenBatches(directory, "val", 1, t), None),
            ):
                for i, _ in enumerate(loader):
                    if batches is not None and i + 1 >= batches:
                        break
                s = loader.stats
                print(f"{label:<22} {loader.batch_size:>4} {t:>5} {s.rows:>7} {s.bos_inserted / s.rows:>13.3f} "
                      f"{s.pieces / max(s.docs, 1):>11.2f} {s.utilization:>12.4f}")
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
