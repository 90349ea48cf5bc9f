"""The data server records the training loss curve itself: progress from its own clock, its own smoothing."""

from __future__ import annotations

import math

from autoresearch.harness.dataserver import CURVE_EVERY, start_server
from autoresearch.harness.wire import Channel, pair


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _server(budget: float = 100.0):
    ours, theirs = pair()
    clock = Clock()
    server, thread = start_server(ours, data_dir="unused", seq_len=8, vocab_size=16, seed=0, budget=budget,
                                  uncounted_steps=0, clock=clock)
    return server, thread, Channel(theirs), clock


def _step(script: Channel, loss: object) -> dict:
    script.send({"op": "step", "loss": loss})
    reply, _ = script.recv()
    return reply


def test_points_every_percent_smoothed_and_junk_ignored() -> None:
    server, thread, script, clock = _server()
    server.account.t_start = 0.0  # the clock has started (a first real batch)
    seen = []
    server.on_curve = lambda account: seen.append(len(account.curve))
    for i in range(400):  # 4 steps per percent of the budget, a loss falling from 5 to 3
        clock.t = i * 0.25
        loss = 5.0 - 2.0 * i / 400 if i % 50 else float("nan")  # an occasional NaN is not a point
        _step(script, loss if i % 77 else "junk")
    script.close()
    thread.join(timeout=5)
    curve = server.account.curve
    assert 90 <= len(curve) <= 100 and seen == list(range(1, len(curve) + 1))
    assert all(b[0] - a[0] >= CURVE_EVERY - 1e-9 for a, b in zip(curve, curve[1:]))
    assert all(math.isfinite(v) for _, v in curve)
    losses = [v for _, v in curve]
    assert losses == sorted(losses, reverse=True)  # smoothing keeps a falling loss falling
    p, v = curve[-1]
    raw = 5.0 - 2.0 * p
    assert raw < v < raw + 0.1  # an average over the last few percent lags a little behind the raw loss


def test_no_points_without_losses_or_after_the_budget() -> None:
    server, thread, script, clock = _server(budget=10.0)
    server.account.t_start = 0.0
    for i in range(20):
        clock.t = i * 0.5
        _step(script, None)  # a script that never called check_loss
    clock.t = 20.0
    assert _step(script, 1.0)["stop"]  # the budget is spent: a loss now is not on the curve
    script.close()
    thread.join(timeout=5)
    assert server.account.curve == []
