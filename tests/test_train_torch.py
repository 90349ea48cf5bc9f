"""train_torch.py for real on the CPU: it trains, the harness scores it, and bad scripts are caught."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoresearch.resources import template_path
from autoresearch.harness.prepare import Prepared
from autoresearch.harness.session import HarnessConfig
from autoresearch.training.runner import RunResult
from autoresearch.training.trial import run_script

TEMPLATE = template_path("torch").read_text()


def _run(tmp_path: Path, data: Prepared, source: str = TEMPLATE, *, budget: float = 8.0, max_steps: int | None = None,
         seed: int = 0, name: str = "run") -> RunResult:
    cfg = HarnessConfig(data_dir=str(data.directory), seq_len=128, vocab_size=data.manifest.vocab_size,
                        time_budget=budget, eval_tokens=2**14, device="cpu", seed=seed, max_steps=max_steps,
                        eval_batch_size=16, progress_interval=1.0)
    return run_script(source, cfg, tmp_path / name, deadline_seconds=budget + 120)


def _with(source: str, **knobs: object) -> str:
    for name, value in knobs.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, count=1, flags=re.M)
        assert n == 1, name
    return source


def test_trains_below_the_unigram_baseline(tmp_path: Path, stdlib_small: Prepared) -> None:
    result = _run(tmp_path, stdlib_small, budget=10.0)
    assert result.status == "ok", result.tail
    log = result.log_path.read_text()
    summary = log.split("\n---\n", 1)[1]
    keys = [line.split(":")[0] for line in summary.splitlines() if ":" in line]
    for key in ("val_bpb", "training_seconds", "total_seconds", "peak_memory_mb", "total_tokens_M", "num_steps",
                "num_params_M", "depth", "backend", "device"):
        assert key in keys, key
    m = result.metrics
    unigram = stdlib_small.manifest.stats["unigram_bpb"]
    assert m["val_bpb"] < unigram - 0.3, (m["val_bpb"], unigram)
    assert 10.0 <= m["training_seconds"] < 13.0
    assert m["num_steps"] > 10 and m["total_tokens"] > 0
    assert "mfu_percent" not in m  # no known peak on a CPU
    assert m["causality_max_diff"] is not None and m["causality_max_diff"] < 1e-3
    # the loss curve, recorded by the data server: progress rising in ~1% steps, the smoothed loss falling
    curve = m["loss_curve"]
    assert len(curve) >= 10
    progress = [p for p, _ in curve]
    assert progress == sorted(progress) and 0 < progress[0] < 0.2 and progress[-1] > 0.8
    assert all(b - a >= 0.0099 for a, b in zip(progress, progress[1:]))
    assert curve[-1][1] < curve[0][1] - 0.5


def test_same_seed_same_result(tmp_path: Path, stdlib_small: Prepared) -> None:
    a = _run(tmp_path, stdlib_small, max_steps=12, budget=120, name="a")
    b = _run(tmp_path, stdlib_small, max_steps=12, budget=120, name="b")
    c = _run(tmp_path, stdlib_small, max_steps=12, budget=120, seed=1, name="c")
    assert a.status == b.status == c.status == "ok", a.tail + b.tail + c.tail
    assert a.metrics["num_steps"] == b.metrics["num_steps"] == 12
    assert a.val_bpb == b.val_bpb
    assert a.val_bpb != c.val_bpb


def test_a_model_that_sees_the_future_is_invalid(tmp_path: Path, stdlib_small: Prepared) -> None:
    leaky = TEMPLATE.replace("is_causal=True", "is_causal=False")
    assert leaky != TEMPLATE
    result = _run(tmp_path, stdlib_small, leaky, max_steps=5, budget=60)
    assert result.status == "invalid", result.tail
    assert "sees the future" in result.reason


def test_nan_learning_rate_fails_fast(tmp_path: Path, stdlib_small: Prepared) -> None:
    result = _run(tmp_path, stdlib_small, _with(TEMPLATE, LOGIT_SOFTCAP=0.0, UNEMBED_LR=1e4), budget=30)
    assert result.status == "nan", result.tail
    assert result.metrics["num_steps"] <= 5
    assert result.wall_seconds < 20


def test_training_outside_the_harness_clock_is_invalid(tmp_path: Path, stdlib_small: Prepared) -> None:
    # a script that keeps working after the last batch (a giant last step, hoarded batches)
    cheat = TEMPLATE.replace("H.finish(model,", "import time\ntime.sleep(15)\nH.finish(model,")
    result = _run(tmp_path, stdlib_small, cheat, budget=4)
    assert result.status == "invalid", result.tail
    assert "after the last batch" in result.reason


def test_every_real_batch_is_counted_even_in_the_uncounted_step(tmp_path: Path, stdlib_small: Prepared) -> None:
    # training 30x on step 0 used to train uncounted on real data; now only the batch prefetched for the uncounted
    # step is warm-up (random tokens), and every real batch is served on the clock and counted
    cheat = TEMPLATE.replace("for _ in range(grad_accum):", "for _ in range(grad_accum * (30 if step == 0 else 1)):")
    assert cheat != TEMPLATE
    result = _run(tmp_path, stdlib_small, cheat, max_steps=8, budget=60)
    assert result.status == "ok", result.tail
    m = result.metrics
    assert m["warmup_batches"] == 1 and m["num_steps"] == 8
    assert m["total_tokens"] >= 30 * 2 * 8 * 128  # the 30x of step 0 (2 micro-batches a step) are all counted


def _script_functions(*names: str) -> dict:
    """Functions of train_torch.py, defined without running the script (it trains on import)."""
    import ast

    import torch
    import torch.nn.functional as F

    tree = ast.parse(TEMPLATE)
    module = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names], type_ignores=[])
    ns: dict = {"torch": torch, "F": F, "FLEX": {}}
    exec(compile(module, "train_torch.py", "exec"), ns)
    return ns


@pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")
def test_sliding_windows_through_flex_attention_match_the_dense_mask() -> None:
    """The CUDA path (flex attention with a block mask) computes what the CPU path (SDPA, dense mask) does.
    Flex attention has no backward on the CPU, so this checks the forward; training speed is proven on CUDA."""
    import torch

    ns = _script_functions("sliding_window_mask", "windowed_attention")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 256, 32) for _ in range(3))
    for window in (16, 100, 128):
        dense = ns["windowed_attention"](q, k, v, ns["sliding_window_mask"](256, window, "cpu"), window)
        block = ns["sliding_window_mask"](256, window, "cpu", flex=True)
        with torch.no_grad():
            flex = ns["windowed_attention"](q, k, v, block, window)
            shorter = ns["windowed_attention"](q[:, :, :100], k[:, :, :100], v[:, :, :100], block, window)
        assert torch.allclose(flex, dense, atol=1e-5), (window, (flex - dense).abs().max())
        assert torch.allclose(shorter, dense[:, :, :100], atol=1e-5)  # a shorter input falls back to a dense mask


def test_sliding_window_pattern_trains(tmp_path: Path, stdlib_small: Prepared) -> None:
    r = _run(tmp_path, stdlib_small, _with(TEMPLATE, WINDOW_PATTERN="SL", SHORT_WINDOW=32), max_steps=6)
    assert r.status == "ok", r.tail
