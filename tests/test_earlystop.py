"""The early-stop judge (issue 15): schedules, projections, margins, and replaying this machine's real curves."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from autoresearch.backends.knobs import set_knobs
from autoresearch.engine.earlystop import (MODES, Judge, Reference, at, clean_curve, level, mode_for, schedule_difference,
                                           schedule_signature)
from autoresearch.resources import template_path

TEMPLATE = template_path("torch").read_text()
CURVES = Path(__file__).resolve().parents[1] / "benchmarks" / "curves" / "cpu_stdlib_30s.jsonl"
SIG = schedule_signature(TEMPLATE)
RATIO = 2.0  # nats of training loss per val bit per byte, in the synthetic curves


def curve(offset: float = 0.0, seed: int = 0, noise: float = 0.03, early: float = 0.0) -> list[tuple[float, float]]:
    """A falling loss every 1%: 6 - 1.5 p (+ offset), with seeded noise; ``early`` adds a bump fading by the end."""
    rng = random.Random(seed)
    return [(round(p / 100, 2), 6.0 - 1.5 * p / 100 + offset + early * (1 - p / 100) + rng.gauss(0, noise))
            for p in range(2, 100)]


def ref(c: list[tuple[float, float]], trusted: bool = True, schedule: str = SIG, val: float | None = None) -> Reference:
    return Reference(curve=tuple(c), val_bpb=val if val is not None else c[-1][1] / RATIO, schedule=schedule, trusted=trusted)


def baseline_refs() -> list[Reference]:
    return [ref(curve(seed=s)) for s in range(3)]


def run_judge(judge: Judge, c: list[tuple[float, float]]):
    return judge.replay(c)


def best_of(refs: list[Reference]) -> float:
    return statistics.mean(r.val_bpb for r in refs)


def test_the_schedule_signature_sees_schedule_changes_only() -> None:
    assert schedule_signature(set_knobs(TEMPLATE, {"MATRIX_LR": 0.06, "DEPTH": 2})) == SIG
    assert schedule_signature(TEMPLATE.replace('"""The peak learning rate\'s multiplier', '"""Another docstring')) == SIG
    warm = schedule_signature(set_knobs(TEMPLATE, {"WARMDOWN_FRAC": 0.7}))
    assert warm != SIG and schedule_difference(SIG, warm) == "WARMDOWN_FRAC"
    body = TEMPLATE.replace("    left = (1.0 - progress) / WARMDOWN_FRAC", "    left = ((1.0 - progress) / WARMDOWN_FRAC) ** 2")
    assert body != TEMPLATE and schedule_difference(SIG, schedule_signature(body)) == "lr_multiplier"
    dropout = TEMPLATE.replace("WIDTH = 128", "WIDTH = 128\nDROPOUT = 0.1")
    assert schedule_difference(SIG, schedule_signature(dropout)) == "DROPOUT"
    assert schedule_signature("def broken(:\n") == "unparsable"


def test_curves_are_cleaned_and_read_between_points() -> None:
    assert clean_curve([[0.1, 5.0], [0.05, 4.0], [0.2, float("nan")], "x", [0.3, True], [0.4, 4.0]]) == [(0.1, 5.0), (0.4, 4.0)]
    c = [(0.1, 5.0), (0.3, 4.0)]
    assert at(c, 0.2) == pytest.approx(4.5) and at(c, 0.05) is None and at(c, 0.31) is None
    assert level(c, 0.3, window=0.2) == pytest.approx(4.5)  # the mean over the window


def test_modes() -> None:
    assert mode_for(None) is MODES["safe"] and mode_for("off") is None and mode_for("AGGRESSIVE") is MODES["aggressive"]
    with pytest.raises(ValueError, match="off, safe, aggressive"):
        mode_for("sometimes")


def test_a_clearly_worse_curve_is_stopped_after_the_first_part_of_the_budget() -> None:
    refs = baseline_refs()
    judge = Judge(MODES["safe"], refs, best_bpb=best_of(refs), schedule=SIG, sigma=0.01)
    stop = run_judge(judge, curve(offset=0.6, seed=7))
    assert stop is not None
    assert 0.3 <= stop.progress <= 0.34  # not before 30%, then three points in a row
    assert stop.projected == pytest.approx(best_of(refs) + 0.3, abs=0.05)
    assert stop.reason.startswith(f"stopped early at {stop.progress:.0%} (projected {stop.projected:.4f}")
    aggressive = run_judge(Judge(MODES["aggressive"], refs, best_bpb=best_of(refs), schedule=SIG, sigma=0.01),
                           curve(offset=0.6, seed=7))
    assert aggressive is not None and aggressive.progress < stop.progress


def test_a_curve_within_the_spread_or_better_is_never_stopped() -> None:
    refs = baseline_refs()
    for seed in range(20):  # the baseline's own seeds, and a better change, across noise draws
        for offset in (0.0, -0.2, 0.04):
            judge = Judge(MODES["aggressive"], refs, best_bpb=best_of(refs), schedule=SIG, sigma=0.01)
            assert run_judge(judge, curve(offset=offset, seed=100 + seed)) is None


def test_a_slow_start_that_catches_up_is_not_stopped_in_safe_mode() -> None:
    refs = baseline_refs()  # worse early (0.3 nats at 30%, fading): ends at the baseline's level
    judge = Judge(MODES["safe"], refs, best_bpb=best_of(refs), schedule=SIG, sigma=0.05)
    assert run_judge(judge, curve(seed=3, early=0.3)) is None


def test_a_different_schedule_is_not_compared() -> None:
    refs = baseline_refs()
    other = schedule_signature(set_knobs(TEMPLATE, {"WARMUP_FRAC": 0.2}))
    judge = Judge(MODES["safe"], refs, best_bpb=best_of(refs), schedule=other, sigma=0.01)
    assert not judge.active and "WARMUP_FRAC" in judge.off_reason
    assert run_judge(judge, curve(offset=2.0)) is None
    assert not Judge(None, refs, best_bpb=1.0, schedule=SIG).active  # off


def test_a_falsely_low_reference_cannot_get_runs_stopped() -> None:
    refs = baseline_refs()
    base = best_of(refs)
    # a kept change whose script reported losses far below its real ones early on, honest at the end: its
    # val_bpb is barely better than the baseline's
    fake = [(p, loss - 0.8 * (1 - p)) for p, loss in curve(seed=11, offset=-0.02)]
    faked = ref(fake, trusted=False)
    judge = Judge(MODES["aggressive"], refs + [faked], best_bpb=faked.val_bpb, schedule=SIG, sigma=0.01)
    assert faked in judge.references  # it agrees with its val_bpb at the end ...
    assert run_judge(judge, curve(seed=12)) is None  # ... but the baseline's projection is the hopeful one
    alone = Judge(MODES["aggressive"], refs[:0] + [faked], best_bpb=faked.val_bpb, schedule=SIG, sigma=0.01)
    assert not alone.active and alone.off_reason == "the baseline has no loss curve"
    # a change whose final loss does not match its val_bpb the way the baseline's do is not a reference at all
    liar = ref(curve(seed=13, offset=-1.0), trusted=False, val=base - 0.05)
    assert liar not in Judge(MODES["safe"], refs + [liar], best_bpb=liar.val_bpb, schedule=SIG).references


def test_nothing_is_stopped_near_the_end_or_from_junk() -> None:
    refs = baseline_refs()
    late = [(p, loss + (2.0 if p > 0.9 else 0.0)) for p, loss in curve(seed=5)]  # worse only after 90%
    assert run_judge(Judge(MODES["aggressive"], refs, best_bpb=best_of(refs), schedule=SIG), late) is None
    junk = [(p, float("nan")) for p, _ in curve()]
    assert run_judge(Judge(MODES["aggressive"], refs, best_bpb=best_of(refs), schedule=SIG), junk) is None


def _recorded() -> list[dict]:
    return [json.loads(line) for line in CURVES.read_text().splitlines() if line.strip()]


def test_replaying_this_machines_curves_stops_the_hopeless_and_spares_the_good() -> None:
    rows = _recorded()
    base = [r for r in rows if r["label"] == "template"]
    refs = [Reference(curve=tuple(clean_curve(r["loss_curve"])), val_bpb=r["val_bpb"], schedule=r["schedule"], trusted=True)
            for r in base]
    assert len(refs) == 3 and all(r.ratio is not None for r in refs)
    best = statistics.mean(r.val_bpb for r in refs)
    sigma = statistics.stdev(r["val_bpb"] for r in rows if r["label"].startswith("template"))
    by_label = {(r["label"], r["seed"]): r for r in rows}

    def stopped(label: str, seed: int = 0, mode: str = "safe"):
        r = by_label[(label, seed)]
        return run_judge(Judge(MODES[mode], refs, best_bpb=best, schedule=r["schedule"], sigma=sigma),
                         clean_curve(r["loss_curve"]))

    for good in ("DEPTH1", "WIDTH64", "WD0.2", "VE", "VE+SSSL"):  # ended below (or near) the baseline's mean
        assert stopped(good, mode="aggressive") is None, good
    assert stopped("template-s3", 3) is None and stopped("template-s3", 4) is None  # the baseline itself
    for bad in ("UELR.05", "DEPTH8"):  # ended 0.13-0.45 above it
        stop = stopped(bad)
        assert stop is not None and stop.progress < 0.5 and stop.projected > best + 0.1, bad
    warmdown = by_label[("WARMDOWN.8", 0)]
    assert warmdown["schedule"] != base[0]["schedule"]  # recorded with its own schedule: never compared
    assert not Judge(MODES["safe"], refs, best_bpb=best, schedule=warmdown["schedule"]).active
    assert all(math.isfinite(r.val_bpb) for r in refs)


def test_after_a_kept_schedule_change_its_confirmed_curves_are_the_reference() -> None:
    refs = baseline_refs()
    other = schedule_signature(set_knobs(TEMPLATE, {"WARMDOWN_FRAC": 0.7}))
    kept = [ref(curve(seed=20 + s, offset=-0.1), trusted=False, schedule=other) for s in range(2)]
    best = best_of(kept)
    judge = Judge(MODES["safe"], refs + kept, best_bpb=best, schedule=other, sigma=0.01)
    assert judge.active and judge.against.startswith("the best's 2 trainings")
    assert run_judge(judge, curve(seed=30, offset=0.6)) is not None
    assert run_judge(Judge(MODES["safe"], refs + kept, best_bpb=best, schedule=other, sigma=0.01), curve(seed=31, offset=-0.1)) is None
    one = Judge(MODES["safe"], refs + kept[:1], best_bpb=best, schedule=other, sigma=0.01)  # not confirmed: no spread
    assert not one.active and "too few trainings" in one.off_reason


def test_a_loss_on_another_scale_is_not_judged() -> None:
    refs = baseline_refs()  # e.g. a change that reports the loss divided by its accumulation steps (4)
    judge = Judge(MODES["aggressive"], refs, best_bpb=best_of(refs), schedule=SIG, sigma=0.01)
    scaled = [(p, 4 * loss) for p, loss in curve(seed=8)]  # or multiplied: looks hopeless, is not comparable
    assert run_judge(judge, scaled) is None and "not on the references' scale" in judge.off_reason
