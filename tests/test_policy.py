"""Keep/discard policies: noise estimation, decisions, and the simulated false-keep / recall targets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from autoresearch.engine.ledger import Ledger
from autoresearch.engine.policy import (
    Decision,
    GreedyPolicy,
    NoiseEstimate,
    NoisePolicy,
    estimate_noise,
    make_policy,
    t_quantile,
)
from autoresearch.engine.simulate import EffectMixture, simulate

SIGMA = NoiseEstimate(0.0007, 10, "baseline x2 + reruns")
BASE = [0.9979, 0.9981]  # baseline, two seeds, mean 0.998


# ---------------------------------------------------------------------------------------------------
# noise estimate


def test_estimate_noise_matches_a_hand_computation() -> None:
    groups = [[1.0, 1.2], [2.0, 2.1, 2.3], [5.0], []]
    # group 1: mean 1.1, squares 0.01 + 0.01 = 0.02; group 2: mean 6.4/3, squares
    # (0.4/3)^2 + (0.1/3)^2 + (0.5/3)^2 = 0.42/9; singletons and empty groups carry no information
    ss = 0.02 + 0.42 / 9
    est = estimate_noise(groups, source="test")
    assert est.dof == 3
    assert est.sigma == pytest.approx(math.sqrt(ss / 3))
    assert est.sigma == pytest.approx(0.149071, abs=1e-6)
    assert est.source == "test" and est.known


def test_estimate_noise_unknown_without_repeats_and_ignores_missing_values() -> None:
    assert estimate_noise([]) == NoiseEstimate(None, 0)
    assert estimate_noise([[1.0], [2.0]]) == NoiseEstimate(None, 0)
    assert not NoiseEstimate(None, 0).known
    est = estimate_noise([[1.0, None, 1.2, float("nan")]])
    assert est.dof == 1 and est.sigma == pytest.approx(math.sqrt(0.02))


def test_noise_estimate_event_round_trip_through_the_ledger(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    led.append(SIGMA.to_event())
    assert NoiseEstimate.from_event(Ledger(tmp_path).last("noise_estimate")) == SIGMA
    assert NoiseEstimate.from_event(None) == NoiseEstimate(None, 0)


@pytest.mark.parametrize(("p", "dof", "expected"), [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 10, 2.2281), (0.95, 5, 2.0150), (0.995, 3, 5.8409),
    (0.9, 30, 1.3104), (0.025, 4, -2.7764), (0.5, 7, 0.0),
])
def test_t_quantile_matches_tables(p: float, dof: float, expected: float) -> None:
    assert t_quantile(p, dof) == pytest.approx(expected, abs=2e-4)


def test_t_quantile_approaches_the_normal() -> None:
    assert t_quantile(0.99, 1e6) == pytest.approx(2.3263, abs=1e-4)
    assert t_quantile(0.99, 2000) == pytest.approx(2.3282, abs=2e-3)


# ---------------------------------------------------------------------------------------------------
# noise policy decisions


def test_clear_improvement_is_confirmed_then_kept() -> None:
    pol = NoisePolicy()
    first = pol.decide([0.9900], BASE, SIGMA, best_selected=False)
    assert first.action == "rerun" and "confirming" in first.reason  # keep_runs=2: never on one draw
    second = pol.decide([0.9900, 0.9906], BASE, SIGMA, best_selected=False)
    assert second.action == "keep"
    assert second.improvement == pytest.approx(0.0077)
    assert second.z > 10 and second.sigma == pytest.approx(0.0007)
    assert "improvement 0.0077" in second.reason and "0.0007 from 10 dof" in second.reason
    # without the confirmation requirement a clear single run is kept at once
    assert NoisePolicy(keep_runs=1).decide([0.9900], BASE, SIGMA).action == "keep"


def test_clear_regression_is_discarded_without_rerun() -> None:
    d = NoisePolicy().decide([1.0030], BASE, SIGMA)
    assert d.action == "discard" and d.improvement == pytest.approx(-0.005) and d.z < 0
    assert "worse by 0.0050" in d.reason


def test_neutral_result_is_discarded() -> None:
    assert NoisePolicy().decide([0.9978], BASE, SIGMA, best_selected=False).action == "discard"


def test_marginal_reruns_then_keeps_when_evidence_accumulates() -> None:
    pol = NoisePolicy()
    one = pol.decide([0.9965], BASE, SIGMA, best_selected=False)  # 1.5 mBPB ~ 1.7 se: promising
    assert one.action == "rerun" and "run 2 of 3" in one.reason
    two = pol.decide([0.9965, 0.9960], BASE, SIGMA, best_selected=False)
    assert two.action == "rerun" and "run 3 of 3" in two.reason
    three = pol.decide([0.9965, 0.9960, 0.9955], BASE, SIGMA, best_selected=False)
    assert three.action == "keep", three.reason


def test_marginal_reruns_then_discards_when_the_rerun_disappoints() -> None:
    pol = NoisePolicy()
    assert pol.decide([0.9965], BASE, SIGMA).action == "rerun"
    d = pol.decide([0.9965, 0.9985], BASE, SIGMA)
    assert d.action == "discard" and "below the rerun threshold" in d.reason


def test_max_runs_is_respected() -> None:
    marginal = [0.9968, 0.9970, 0.9969]  # consistently ~1 mBPB better: never quite significant
    pol = NoisePolicy(max_runs=3)
    assert pol.decide(marginal[:2], BASE, SIGMA).action == "rerun"
    last = pol.decide(marginal, BASE, SIGMA)
    assert last.action == "discard" and "after 3 runs" in last.reason
    assert NoisePolicy(max_runs=1).decide([0.9965], BASE, SIGMA).action == "discard"
    # even a clear improvement is kept (not rerun) when the rerun budget is spent
    assert NoisePolicy(max_runs=1).decide([0.9900], BASE, SIGMA).action == "keep"


def test_unknown_sigma_reruns_first_and_uses_the_runs_own_spread() -> None:
    pol = NoisePolicy(keep_runs=1)
    unknown = NoiseEstimate(None, 0)
    first = pol.decide([0.9900], [0.9980], unknown)
    assert first.action == "rerun" and "sigma unknown" in first.reason
    assert "only 0 dof" in first.reason
    # after a rerun the candidate's own two runs give 1 dof: still below min_dof, but runs > 1
    second = pol.decide([0.9900, 0.9902], [0.9980], unknown)
    assert second.action == "keep" and "own 1 dof" in second.reason
    # a rough estimate (1 dof) also blocks a single-run keep
    assert pol.decide([0.9900], BASE, NoiseEstimate(0.0007, 1)).action == "rerun"
    assert pol.decide([0.9900], BASE, NoiseEstimate(0.0007, 3)).action == "keep"


def test_few_dof_demand_more_evidence() -> None:
    pol = NoisePolicy()
    rough, _ = pol.thresholds(1 + pol.prior_dof)
    solid, _ = pol.thresholds(200 + pol.prior_dof)
    assert rough > 1.5 * solid and solid == pytest.approx(pol.z_keep, abs=0.05)
    candidate = [0.9960, 0.9962]
    assert pol.decide(candidate, BASE, NoiseEstimate(0.0007, 100)).action == "keep"
    assert pol.decide(candidate, BASE, NoiseEstimate(0.0007, 1)).action == "rerun"


def test_sigma_prior_only_raises_and_the_floor_holds() -> None:
    pol = NoisePolicy()
    ref = 1.0
    prior = pol.rel_sigma_prior * ref
    tiny, _, _, why = pol.effective_sigma(NoiseEstimate(1e-6, 1), ref)  # 1 dof: tiny by chance
    assert tiny == pytest.approx(math.sqrt((1e-12 + 2 * prior**2) / 3), rel=1e-6) and "prior" in why
    big, _, _, _ = pol.effective_sigma(NoiseEstimate(0.03, 1), ref)  # Mac-like noise is never lowered
    assert big == 0.03
    many, _, _, _ = pol.effective_sigma(NoiseEstimate(0.0002, 1000), ref)  # the data dominate
    assert many == pytest.approx(0.0002, rel=0.01)
    zero, _, _, why = pol.effective_sigma(NoiseEstimate(0.0, 1000), ref)  # a script that ignores its seed
    assert zero == pol.rel_sigma_floor * ref and "floored" in why
    none, t_dof, dof, why = pol.effective_sigma(NoiseEstimate(None, 0), ref)
    assert none == prior and dof == 0 and t_dof == pol.prior_dof and "unknown" in why


def test_winner_curse_adjustment_only_for_a_selected_best() -> None:
    pol = NoisePolicy(winner_curse=0.5)
    best = [0.9900, 0.9902]
    selected = pol.decide([0.9890], best, SIGMA, best_selected=True)
    baseline = pol.decide([0.9890], best, SIGMA, best_selected=False)
    se = 0.0007 * math.sqrt(1 + 1 / 2)
    assert selected.z - baseline.z == pytest.approx(0.5 * 0.0007 / math.sqrt(2) / se)
    assert selected.improvement == baseline.improvement  # the raw measured improvement is reported
    assert "winner's curse" in selected.reason and "winner's curse" not in baseline.reason


def test_edge_cases() -> None:
    pol = NoisePolicy()
    assert pol.decide([], BASE, SIGMA).action == "discard"
    assert pol.decide([float("nan")], BASE, SIGMA).action == "discard"
    assert pol.decide([0.99], [], SIGMA).action == "keep"
    with pytest.raises(ValueError):
        Decision("maybe", "x")


# ---------------------------------------------------------------------------------------------------
# greedy and the factory


def test_greedy_is_upstreams_rule() -> None:
    g = GreedyPolicy()
    assert g.baseline_seeds == 1 and g.max_runs == 1 and g.name == "greedy"
    assert g.decide([0.99799], [0.9980]).action == "keep"  # any improvement, however small
    assert g.decide([0.9980], [0.9980]).action == "discard"  # equal is not better
    d = g.decide([0.9990], [0.9980], SIGMA)
    assert d.action == "discard" and "0.9990" in d.reason
    assert g.decide([0.9975], [0.9980]).action == "keep"  # never reruns
    assert g.decide([], [0.9980]).action == "discard"
    assert g.decide([0.99], []).action == "keep"


def test_make_policy() -> None:
    noise = make_policy("noise", baseline_seeds=3, z_keep=3.0)
    assert isinstance(noise, NoisePolicy) and noise.baseline_seeds == 3 and noise.z_keep == 3.0
    assert make_policy().name == "noise" and make_policy().baseline_seeds == 2
    assert isinstance(make_policy("greedy"), GreedyPolicy)
    assert make_policy("noise", **noise.options()) == noise
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("bayes")
    with pytest.raises(ValueError, match="bad options"):
        make_policy("noise", z_kep=3)
    with pytest.raises(ValueError):
        make_policy("noise", baseline_seeds=1)
    with pytest.raises(ValueError):
        make_policy("noise", baseline_seeds=4)
    with pytest.raises(ValueError):
        make_policy("noise", z_keep=1.0, z_rerun=2.0)


# ---------------------------------------------------------------------------------------------------
# simulation: the targets hold (deterministic: seeded; margins of several points at 1000 trials:
# false keeps ~2.7%, recall above 3 sigma ~88%)


@pytest.mark.parametrize("seed", [11, 12])
def test_simulated_targets_hold(seed: int) -> None:
    noise = simulate(make_policy("noise"), experiments=100, trials=200, seed=seed)
    greedy = simulate(make_policy("greedy"), experiments=100, trials=200, seed=seed)
    assert noise.big_total > 500 and noise.keeps > 500  # enough events for stable rates
    assert noise.false_keep_rate <= 0.05, noise
    assert noise.recall_big >= 0.80, noise
    assert noise.meets_target()
    assert greedy.false_keep_rate > 0.3 and not greedy.meets_target()  # what the noise policy fixes
    assert 1.0 < noise.runs_per_experiment < 1.5 and greedy.runs_per_experiment == 1.0
    assert noise.mean_improvement > 0.5 * noise.mean_oracle


def test_simulation_is_deterministic_and_counts_consistently() -> None:
    a = simulate(make_policy("noise"), experiments=30, trials=20, seed=3)
    b = simulate(make_policy("noise"), experiments=30, trials=20, seed=3)
    assert a == b
    assert a.false_keeps <= a.keeps and a.big_kept <= a.big_total and a.mid_kept <= a.mid_total
    assert a.runs >= 30 * 20
    never_better = EffectMixture(p_harmful=0.5, p_neutral=0.5, p_small=0.0)
    c = simulate(make_policy("noise"), experiments=50, trials=40, seed=4,
                 mixture=EffectMixture(p_harmful=1.0, p_neutral=0.0, p_small=0.0, big_min=0.0))
    assert c.big_total == 0 and c.mid_total == 0
    d = simulate(make_policy("greedy"), experiments=50, trials=40, seed=4, mixture=never_better)
    assert d.keeps > 0 and d.false_keeps == d.keeps and d.mean_improvement <= 0
