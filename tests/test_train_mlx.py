"""train_mlx.py for real on the CPU (mlx[cpu]): it trains, the harness scores it, and bad scripts are caught.

The MLX twin of test_train_torch.py, plus checks that the two templates stay twins: the same knobs, and the
same model and optimizer arithmetic (logits and parameters after a few steps from the same weights).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")

from autoresearch.resources import template_path  # noqa: E402
from autoresearch.backends.knobs import read_knobs  # noqa: E402
from autoresearch.harness.dataserver import start_server  # noqa: E402
from autoresearch.harness.prepare import Prepared  # noqa: E402
from autoresearch.harness.session import HarnessConfig, HarnessError  # noqa: E402
from autoresearch.harness.wire import pair  # noqa: E402
from autoresearch.training.runner import RunResult  # noqa: E402
from autoresearch.training.trial import run_script  # noqa: E402

pytestmark = pytest.mark.mlx

TEMPLATE = template_path("mlx").read_text()
TORCH_TEMPLATE = template_path("torch").read_text()


def _run(tmp_path: Path, data: Prepared, source: str = TEMPLATE, *, budget: float = 8.0, max_steps: int | None = None,
         seed: int = 0, name: str = "run", compile: bool = False) -> RunResult:
    cfg = HarnessConfig(data_dir=str(data.directory), seq_len=128, vocab_size=data.manifest.vocab_size,
                        time_budget=budget, eval_tokens=2**14, device="cpu", seed=seed, max_steps=max_steps,
                        eval_batch_size=16, progress_interval=1.0, backend="mlx", compile=compile)
    return run_script(source, cfg, tmp_path / name, deadline_seconds=budget + 120)


def _with(source: str, **knobs: object) -> str:
    for name, value in knobs.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, count=1, flags=re.M)
        assert n == 1, name
    return source


def test_knobs_match_the_torch_template() -> None:
    ours = {k: v.value for k, v in read_knobs(TEMPLATE).items()}
    theirs = {k: v.value for k, v in read_knobs(TORCH_TEMPLATE).items()}
    assert list(ours) == list(theirs)
    assert ours == theirs
    assert len(ours) > 15  # the markers were found: the whole block, not a stray constant


def _config(data: Prepared, path: Path, **overrides: Any) -> Path:
    settings: dict[str, Any] = dict(data_dir=str(data.directory), seq_len=64, vocab_size=data.manifest.vocab_size,
                                    time_budget=5, eval_tokens=2**10, device="cpu", backend="mlx")
    HarnessConfig(**{**settings, **overrides}).write(path)
    return path


def test_session_batches_device_and_accounting(tmp_path: Path, stdlib_small: Prepared,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from autoresearch.harness import mlx as harness

    ours, theirs = pair()  # the data server in this process, over a real socket
    server, _ = start_server(ours, data_dir=str(stdlib_small.directory), seq_len=64,
                             vocab_size=stdlib_small.manifest.vocab_size, seed=0, budget=5, uncounted_steps=0)
    monkeypatch.setenv("AUTORESEARCH_DATA_FD", str(theirs.detach()))
    session = harness.start(_config(stdlib_small, tmp_path / "harness.json"))
    assert session.backend == "mlx" and session.device == mx.cpu
    x, y = next(session.train_batches(3))
    assert x.dtype == y.dtype == mx.int32 and x.shape == y.shape == (3, 64)
    assert np.array_equal(np.array(x)[:, 1:], np.array(y)[:, :-1])  # targets are the inputs shifted by one
    assert session.tokens == 3 * 64 == server.account.tokens
    model = nn.Sequential(nn.Embedding(stdlib_small.manifest.vocab_size, 8), nn.Linear(8, stdlib_small.manifest.vocab_size))
    assert session._count_params(model) == 2 * 8 * stdlib_small.manifest.vocab_size + stdlib_small.manifest.vocab_size
    session.synchronize()
    assert session.peak_memory_mb() > 0


def test_session_refuses_a_device_it_cannot_use(tmp_path: Path, stdlib_small: Prepared) -> None:
    from autoresearch.harness import mlx as harness

    with pytest.raises(HarnessError, match="unknown MLX device"):
        harness.start(_config(stdlib_small, tmp_path / "a.json", device="cuda"))
    if mx.is_available(mx.gpu):
        pytest.skip("this MLX has a GPU")
    with pytest.raises(HarnessError, match="GPU"):
        harness.start(_config(stdlib_small, tmp_path / "b.json", device="gpu"))
    assert mx.default_device() == mx.cpu


def test_logits_must_be_a_plain_array() -> None:
    from autoresearch.harness import mlx_eval as harness

    class Fake(mx.array):  # could answer the harness's slicing and casting with anything
        pass

    with pytest.raises(harness.LogitsError, match="plain mx.array"):
        harness.check_causality(lambda x: Fake(mx.zeros((*x.shape, 16))), 16, 8, trials=1)


# A smaller model for the runs that must train quickly: mlx[cpu] on Linux ships the reference (netlib) BLAS,
# about 8x slower than OpenBLAS, so the default model does ~900 tok/s at seq_len 128 here (PyTorch: ~20k).
# At these knobs it does ~5k tok/s: enough steps in 10 s to learn well below the unigram baseline.
SMALL = dict(WIDTH=64, DEPTH=2, TOTAL_BATCH_SIZE=1024)


def test_trains_below_the_unigram_baseline(tmp_path: Path, stdlib_small: Prepared) -> None:
    result = _run(tmp_path, stdlib_small, _with(TEMPLATE, **SMALL), budget=10.0)
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
    assert m["backend"] == "mlx" and m["depth"] == 2
    assert m["num_params"] > 0 and m["peak_memory_mb"] > 0
    assert "mfu_percent" not in m  # no known peak on a CPU
    assert m["causality_max_diff"] is not None and m["causality_max_diff"] < 1e-3


def test_same_seed_same_result(tmp_path: Path, stdlib_small: Prepared) -> None:
    # MLX on the CPU is deterministic run to run (measured: identical losses and val_bpb), so equality is exact
    small = _with(TEMPLATE, **SMALL)
    a = _run(tmp_path, stdlib_small, small, max_steps=12, budget=120, name="a")
    b = _run(tmp_path, stdlib_small, small, max_steps=12, budget=120, name="b")
    c = _run(tmp_path, stdlib_small, small, max_steps=12, budget=120, seed=1, name="c")
    assert a.status == b.status == c.status == "ok", a.tail + b.tail + c.tail
    assert a.metrics["num_steps"] == b.metrics["num_steps"] == 12
    assert a.val_bpb == b.val_bpb
    assert a.val_bpb != c.val_bpb


def test_compiled_steps_give_the_eager_result(tmp_path: Path, stdlib_small: Prepared) -> None:
    small = _with(TEMPLATE, **SMALL, WINDOW_PATTERN="SL", SHORT_WINDOW=32, VALUE_EMBEDS=True)
    eager = _run(tmp_path, stdlib_small, small, max_steps=6, budget=120, name="eager")
    compiled = _run(tmp_path, stdlib_small, small, max_steps=6, budget=120, name="compiled", compile=True)
    assert eager.status == compiled.status == "ok", eager.tail + compiled.tail
    assert compiled.val_bpb == pytest.approx(eager.val_bpb, abs=1e-4)


def test_a_model_that_sees_the_future_is_invalid(tmp_path: Path, stdlib_small: Prepared) -> None:
    leaky = TEMPLATE.replace('mask = "causal" if', "mask = None if")
    assert leaky != TEMPLATE
    result = _run(tmp_path, stdlib_small, _with(leaky, **SMALL), max_steps=5, budget=60)
    assert result.status == "invalid", result.tail
    assert "sees the future" in result.reason


def test_nan_learning_rate_fails_fast(tmp_path: Path, stdlib_small: Prepared) -> None:
    # the default model here (its first steps are the slow ones: ~2 s each on this CPU)
    result = _run(tmp_path, stdlib_small, _with(TEMPLATE, LOGIT_SOFTCAP=0.0, UNEMBED_LR=1e4), budget=30)
    assert result.status == "nan", result.tail
    assert result.metrics["num_steps"] <= 5
    assert result.wall_seconds < 20


def test_training_outside_the_harness_clock_is_invalid(tmp_path: Path, stdlib_small: Prepared) -> None:
    cheat = TEMPLATE.replace("H.finish(model,", "import time\ntime.sleep(15)\nH.finish(model,")
    result = _run(tmp_path, stdlib_small, _with(cheat, **SMALL), budget=4)
    assert result.status == "invalid", result.tail
    assert "after the last batch" in result.reason


# -- the twins do the same arithmetic ---------------------------------------------------------------------------
def _definitions(source: str, **knobs: Any) -> dict[str, Any]:
    """The template's model and optimizer definitions (everything before the session starts), knobs overridden."""
    head = source.split("H = harness.start()", 1)[0]
    namespace: dict[str, Any] = {"__name__": "template"}
    exec(compile(head, "template", "exec"), namespace)
    namespace.update(knobs)  # the classes read the knobs as globals at call time
    return namespace


def test_same_model_and_optimizers_as_the_torch_template() -> None:
    torch = pytest.importorskip("torch")
    from mlx.utils import tree_flatten, tree_map_with_path

    knobs = dict(DEPTH=3, WIDTH=64, HEAD_DIM=16, WINDOW_PATTERN="SL", SHORT_WINDOW=5, VALUE_EMBEDS=True)
    T, V, B, steps = 16, 97, 3, 3
    tns, mns = _definitions(TORCH_TEMPLATE, **knobs), _definitions(TEMPLATE, **knobs)
    torch.manual_seed(0)
    tmodel = tns["GPT"](V, T)
    with torch.no_grad():  # no zero-initialised matrices: every parameter gets a gradient from the first step
        for p in tmodel.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mmodel = mns["GPT"](V, T)
    tparams = dict(tmodel.named_parameters())
    mnames = [n for n, _ in tree_flatten(mmodel.parameters())]
    assert sorted(mnames) == sorted(tparams)
    mmodel.update(tree_map_with_path(lambda n, _: mx.array(tparams[n].detach().numpy()), mmodel.parameters()))

    start = {n: p.detach().numpy().copy() for n, p in tparams.items()}
    rng = np.random.default_rng(0)
    xs = rng.integers(0, V, (steps, B, T + 1))
    t_opts = tns["make_optimizers"](tmodel)
    adam, muon = mns["make_optimizers"](mmodel)
    loss_and_grad = nn.value_and_grad(mmodel, mns["loss_fn"])
    for step in range(steps):
        x, y = np.ascontiguousarray(xs[step, :, :-1]), np.ascontiguousarray(xs[step, :, 1:])
        lr_mult, momentum = 0.7, 0.85 + 0.01 * step
        tlogits = tmodel(torch.from_numpy(x))
        mlogits = mmodel(mx.array(x.astype(np.int32)))
        # identical at the start; afterwards float32 rounding grows (Newton-Schulz amplifies small singular
        # directions by up to a^5 ~ 500): measured max logit differences 9e-7, 5e-5, 2e-4 over three steps
        np.testing.assert_allclose(np.array(mlogits), tlogits.detach().numpy(), rtol=0, atol=1e-5 if step == 0 else 2e-3)
        tloss = tmodel(torch.from_numpy(x), torch.from_numpy(y))
        tloss.backward()
        for opt in t_opts:
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * lr_mult
        t_opts[1].param_groups[0]["momentum"] = momentum
        for opt in t_opts:
            opt.step()
        tmodel.zero_grad(set_to_none=True)
        mloss, grads = loss_and_grad(mmodel, mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32)))
        assert float(mloss.item()) == pytest.approx(float(tloss.item()), rel=1e-5)
        params = dict(tree_flatten(mmodel.parameters()))
        flat = dict(tree_flatten(grads))
        new = adam.step(params, flat, mx.array(lr_mult))
        new.update(muon.step(params, flat, mx.array(lr_mult), mx.array(momentum)))
        mmodel.update(tree_map_with_path(lambda n, p: new.get(n, p), mmodel.parameters()))
    # every parameter moved as torch's did, to within 2% of how far it moved (measured: at most 0.5%, in the
    # value embeddings, whose tiny gradients AdamW turns into full-size steps; a wrong rate, momentum,
    # scaling or Nesterov term shows up as tens of percent)
    for name, value in tree_flatten(mmodel.parameters()):
        want = tparams[name].detach().numpy()
        moved = np.abs(want - start[name]).max()
        error = np.abs(np.array(value) - want).max()
        assert moved > 0 and error <= 0.02 * moved, (name, error, moved)
