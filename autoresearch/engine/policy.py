"""Keep / discard / rerun decisions that are honest about run-to-run noise.

Upstream measured that changing only the seed moves val_bpb by about 0.0007 (standard deviation) on an
H100, and 14 of the 22 improvements kept in its published overnight run were smaller than that: a greedy
"lower is better" rule cannot tell many of its keeps from noise. :class:`NoisePolicy` instead

1. estimates the per-run noise ``sigma`` from repeated measurements of the same code with different seeds
   (the baseline's ``baseline_seeds`` runs, and every confirmation rerun): :func:`estimate_noise` pools the
   within-group variances, ``dof = sum(n_i - 1)``;
2. compares the mean of the candidate's runs with the mean of the best's runs, with the standard error
   ``se = sigma * sqrt(1/n_candidate + 1/n_best)``, ``z = (best - candidate) / se`` (positive = better);
3. keeps when ``z`` clears ``z_keep``, reruns the candidate with another seed when ``z`` is between
   ``z_rerun`` and ``z_keep`` and it has fewer than ``max_runs`` runs, and discards otherwise.

Small-sample safeguards (all documented in :meth:`NoisePolicy.effective_sigma`):

- *Prior / floor on sigma.* A standard deviation from 1-2 degrees of freedom is often far too small by
  chance (with 1 dof, one time in ten it is under 1/8 of the truth), which would make every small
  difference look significant. The estimate is therefore shrunk toward a prior relative noise
  ``rel_sigma_prior * best_val_bpb`` worth ``prior_dof`` degrees of freedom -- but only upward: the prior
  can raise a suspiciously small estimate, never lower a large one (on a Mac the noise can be 40x the
  H100's, and a prior must not hide that). With many dof the data dominate. A hard floor
  ``rel_sigma_floor * best_val_bpb`` stays even then (a script that ignores its seed measures sigma = 0).
- *Student-t thresholds.* ``z_keep`` and ``z_rerun`` are one-sided normal quantiles; they are converted to
  the Student-t quantiles of the same probability at ``dof + prior_dof`` degrees of freedom, so a rough
  sigma demands more evidence.
- *Unknown or rough sigma.* With no estimate the policy pools the candidate's and the best's own repeats;
  with fewer than ``min_dof`` degrees of freedom it never keeps on a single run: a candidate that looks
  good is rerun first.
- *Winner's curse.* The best's mean was selected because it measured low, so it is biased low; comparing
  against it makes real improvements look smaller (conservative, but it costs recall and, after a lucky
  keep, can stall the run). ``winner_curse`` adds back that many standard errors of the best's mean
  (``sigma / sqrt(n_best)``) when the best was selected (pass ``best_selected=False`` for the baseline,
  whose seeds were not selected). In the simulation (:mod:`autoresearch.engine.simulate`) a kept best's mean is on average
  0.3 of its standard errors below its true value; the default 0.3 adds that back.
- *Confirmation before keeping.* ``keep_runs=2``: even a candidate far above the threshold is rerun once
  before it is kept. In the simulation this costs ~0.06 extra runs per experiment and improves both the
  false-keep rate and the recall (a keep is never decided on one lucky draw, the new best's mean rests on
  >= 2 runs, and its winner's-curse bias is smaller), which lets ``z_keep`` be lower.

Note on the noise estimate: a rerun group's first value was selected for looking good, so its spread
slightly overstates sigma (by ~10% in the simulation); the error is on the cautious side.

What the simulation says about the trade-off: greedy ends with a somewhat larger *true* gain (it also banks
many real sub-sigma improvements, and most of its false keeps are small harms), but ~46% of its keeps are
not improvements and its history cannot say which. The noise policy trades part of the expected gain for
keeps that are real (~3% false), at ~1.2 training runs per experiment.

:class:`GreedyPolicy` is upstream's rule (keep if lower than the best, one run, no reruns).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Protocol, Sequence

ACTIONS = ("keep", "discard", "rerun")


# ----------------------------------------------------------------------------------------------------
# noise


@dataclass(frozen=True)
class NoiseEstimate:
    """Per-run standard deviation of val_bpb for fixed code (None when unknown) and its degrees of freedom."""

    sigma: float | None
    dof: int
    source: str = ""

    @property
    def known(self) -> bool:
        return self.sigma is not None and self.dof > 0

    def to_event(self) -> dict[str, Any]:
        """The ledger's ``noise_estimate`` event."""
        return {"event": "noise_estimate", "sigma": self.sigma, "dof": self.dof, "source": self.source}

    @classmethod
    def from_event(cls, event: dict[str, Any] | None) -> NoiseEstimate:
        if not event:
            return cls(None, 0)
        sigma = event.get("sigma")
        return cls(float(sigma) if isinstance(sigma, (int, float)) else None, int(event.get("dof") or 0),
                   str(event.get("source") or ""))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def sum_squares(values: Sequence[float]) -> float:
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values)


def estimate_noise(groups: Sequence[Sequence[float | None]], source: str = "") -> NoiseEstimate:
    """Pooled within-group standard deviation of repeated measurements of the same code.

    ``sigma = sqrt(sum_i sum_j (x_ij - mean_i)^2 / dof)``, ``dof = sum_i (n_i - 1)``. Groups with fewer than
    two (finite) values carry no information about noise and are skipped. Unknown (None, 0) without any.
    """
    ss = 0.0
    dof = 0
    for group in groups:
        values = _finite(group)
        if len(values) >= 2:
            ss += sum_squares(values)
            dof += len(values) - 1
    if dof == 0:
        return NoiseEstimate(None, 0, source)
    return NoiseEstimate(math.sqrt(ss / dof), dof, source)


# ----------------------------------------------------------------------------------------------------
# Student-t quantiles (no scipy in the engine)

_NORMAL = NormalDist()


@lru_cache(maxsize=4096)
def t_quantile(p: float, dof: float) -> float:
    """Quantile of Student's t with ``dof`` degrees of freedom (``dof`` may be fractional, >= 0.5).

    With ``t = sqrt(dof) * tan(theta)`` the density becomes ``A * cos(theta)^(dof-1)``, a smooth bounded
    integrand on [0, pi/2): P(0 < T < t) is integrated with Simpson's rule and inverted by bisection.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    if dof >= 1e4:
        return _NORMAL.inv_cdf(p)
    target = p - 0.5
    scale = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(math.pi)
    power = dof - 1.0

    def mass(theta: float) -> float:  # P(0 < T < sqrt(dof) tan(theta))
        n = 64
        h = theta / n
        total = 1.0 + math.cos(theta) ** power
        for i in range(1, n):
            total += (4.0 if i % 2 else 2.0) * math.cos(i * h) ** power
        return scale * total * h / 3.0

    lo, hi = 0.0, math.pi / 2
    for _ in range(48):
        mid = (lo + hi) / 2
        if mass(mid) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(dof) * math.tan((lo + hi) / 2)


# ----------------------------------------------------------------------------------------------------
# decisions


@dataclass(frozen=True)
class Decision:
    """What to do with a candidate, and why (a sentence with the numbers, for the ledger and the UI)."""

    action: str  # keep | discard | rerun
    reason: str
    improvement: float | None = None  # best mean - candidate mean (positive = better)
    z: float | None = None  # improvement in standard errors of the difference
    sigma: float | None = None  # the per-run sigma used

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")


class Policy(Protocol):
    name: str
    baseline_seeds: int
    max_runs: int

    def decide(self, candidate: Sequence[float], best: Sequence[float], noise: NoiseEstimate | None = None,
               *, best_selected: bool = True) -> Decision: ...

    def options(self) -> dict[str, Any]: ...


def _num(x: float) -> str:
    """A bpb difference or sigma, readable at H100 (1e-4) and Mac (1e-2) noise levels alike."""
    if x == 0 or abs(x) >= 0.001:
        return f"{x:.4f}"
    return f"{x:.2g}"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


@dataclass
class GreedyPolicy:
    """Upstream's rule: keep if the (single) val_bpb is lower than the best's, no reruns."""

    baseline_seeds: int = 1
    name: str = field(default="greedy", init=False)
    max_runs: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.baseline_seeds <= 3:
            raise ValueError(f"baseline_seeds must be 1-3, got {self.baseline_seeds}")

    def decide(self, candidate: Sequence[float], best: Sequence[float], noise: NoiseEstimate | None = None,
               *, best_selected: bool = True) -> Decision:
        c, b = _finite(candidate), _finite(best)
        if not c:
            return Decision("discard", "no successful run")
        if not b:
            return Decision("keep", f"first result {c[-1]:.6f} (no best yet)")
        mc, mb = mean(c), mean(b)
        d = mb - mc
        if d > 0:
            return Decision("keep", f"val_bpb {mc:.6f} is lower than the best {mb:.6f} by {_num(d)} (greedy)", d)
        return Decision("discard", f"val_bpb {mc:.6f} is not lower than the best {mb:.6f} "
                                   f"({'+' if d <= 0 else ''}{_num(-d)}, greedy)", d)

    def options(self) -> dict[str, Any]:
        return {"baseline_seeds": self.baseline_seeds}


@dataclass
class NoisePolicy:
    """Keep only improvements that clear the measured noise; rerun promising but marginal candidates.

    Defaults were tuned with :func:`autoresearch.engine.simulate.simulate` (``benchmarks/policy.py``) for a false-keep rate <= 5% while
    keeping >= 80% of true improvements larger than 3 sigma: with the default effect mixture, sigma
    0.0007 and 100 experiments they give ~3% false keeps, ~89% recall above 3 sigma, ~27% recall of
    1-3 sigma improvements, at ~1.2 training runs per experiment (greedy: ~46% false keeps).
    """

    z_keep: float = 2.25  # one-sided normal quantile for keep (converted to Student-t at the available dof)
    z_rerun: float = 1.0  # below this: discard without rerunning
    max_runs: int = 3  # runs of one candidate at most (the first + reruns)
    min_dof: int = 3  # below this many dof of noise data, never keep on a single run (matters if keep_runs=1)
    keep_runs: int = 2  # runs a candidate needs before it can be kept (2 = always confirm with a rerun)
    baseline_seeds: int = 2  # seeds of the baseline (2-3): the first noise estimate
    rel_sigma_prior: float = 5e-4  # prior per-run noise relative to val_bpb (0.0005 at 1.0 bpb)
    prior_dof: float = 2.0  # weight of the prior in degrees of freedom (only ever raises sigma)
    rel_sigma_floor: float = 1e-4  # hard floor on sigma relative to val_bpb
    winner_curse: float = 0.3  # standard errors of the best's mean added back when the best was selected
    name: str = field(default="noise", init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.baseline_seeds <= 3:
            raise ValueError(f"baseline_seeds must be 2-3, got {self.baseline_seeds}")
        if self.max_runs < 1:
            raise ValueError(f"max_runs must be >= 1, got {self.max_runs}")
        if self.z_rerun > self.z_keep:
            raise ValueError(f"z_rerun ({self.z_rerun}) must not exceed z_keep ({self.z_keep})")
        if self.prior_dof < 0 or self.rel_sigma_prior < 0 or self.rel_sigma_floor < 0 or self.winner_curse < 0:
            raise ValueError("prior_dof, rel_sigma_prior, rel_sigma_floor and winner_curse must be >= 0")

    def options(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("name")
        return out

    def effective_sigma(self, noise: NoiseEstimate | None, reference: float,
                        own_groups: Sequence[Sequence[float]] = ()) -> tuple[float, float, int, str]:
        """(sigma, t degrees of freedom, data dof, description) used for a decision.

        - data: ``noise`` if known; otherwise the within-group spread of ``own_groups`` (the candidate's
          and the best's own repeats);
        - prior: ``p = rel_sigma_prior * |reference|`` with ``prior_dof`` pseudo-dof; the result is
          ``max(s, sqrt((dof*s^2 + prior_dof*p^2) / (dof + prior_dof)))`` -- shrinkage that can only raise;
          with no data at all it is ``p``;
        - floor: at least ``rel_sigma_floor * |reference|``.
        """
        s: float | None = None
        dof = 0
        src = ""
        if noise is not None and noise.known:
            s, dof = noise.sigma, noise.dof
            src = f"sigma {_num(s)} from {dof} dof" + (f" ({noise.source})" if noise.source else "")
        else:
            own = estimate_noise(own_groups)
            if own.known:
                s, dof = own.sigma, own.dof
                src = f"sigma unknown; {_num(s)} from these runs' own {dof} dof"
        prior = self.rel_sigma_prior * abs(reference)
        floor = self.rel_sigma_floor * abs(reference)
        if s is None:
            sigma = prior
            src = f"sigma unknown; prior {_num(prior)}"
        else:
            shrunk = math.sqrt((dof * s * s + self.prior_dof * prior * prior) / (dof + self.prior_dof)) \
                if dof + self.prior_dof > 0 else s
            sigma = max(s, shrunk)
            if sigma > s:
                src += f", raised to {_num(sigma)} by the prior {_num(prior)}"
        if sigma < floor:
            sigma = floor
            src += f", floored at {_num(floor)}"
        t_dof = max(dof + self.prior_dof, 0.5)
        return sigma, t_dof, dof, src

    def thresholds(self, t_dof: float) -> tuple[float, float]:
        """(keep, rerun) thresholds in standard errors at ``t_dof`` degrees of freedom."""
        keep = t_quantile(_NORMAL.cdf(self.z_keep), t_dof)
        rerun = t_quantile(_NORMAL.cdf(self.z_rerun), t_dof) if self.z_rerun != 0 else 0.0
        return keep, rerun

    def decide(self, candidate: Sequence[float], best: Sequence[float], noise: NoiseEstimate | None = None,
               *, best_selected: bool = True) -> Decision:
        """Decide on a candidate from its ok val_bpb values and the current best's.

        ``candidate``: val_bpb of every successful run of the candidate so far (1 to max_runs values).
        ``best``: the current best's values (the baseline's seeds, or a kept candidate's runs).
        ``noise``: the run's current estimate (from :func:`estimate_noise` over all repeat groups).
        ``best_selected``: False when the best is the baseline (no winner's curse to correct).
        """
        c, b = _finite(candidate), _finite(best)
        n_c, n_b = len(c), len(b)
        if not c:
            return Decision("discard", "no successful run")
        if not b:
            return Decision("keep", f"first result {mean(c):.6f} (no best yet)")
        mc, mb = mean(c), mean(b)
        sigma, t_dof, dof, src = self.effective_sigma(noise, mb, (c, b))
        sigma = max(sigma, 1e-12)  # only reachable with val_bpb == 0 and identical repeats
        bias = self.winner_curse * sigma / math.sqrt(n_b) if best_selected else 0.0
        se = sigma * math.sqrt(1.0 / n_c + 1.0 / n_b)
        raw = mb - mc  # positive = the candidate measured better
        z = (raw + bias) / se
        keep_at, rerun_at = self.thresholds(t_dof)
        what = f"improvement {_num(raw)} over" if raw > 0 else f"worse by {_num(-raw)} than"
        curse = f", best raised {_num(bias)} for the winner's curse" if bias else ""
        detail = (f"{what} the best {mb:.6f} (z {z:.1f}; se {_num(se)}, {src}; "
                  f"{n_c} run{'s' if n_c > 1 else ''} vs {n_b}{curse})")
        d = raw
        can_rerun = n_c < self.max_runs
        if z >= keep_at:
            if n_c < self.keep_runs and can_rerun:
                return Decision("rerun", f"{detail}: above the keep threshold {keep_at:.1f}; confirming with "
                                         f"another seed before keeping (run {n_c + 1} of {self.max_runs})", d, z, sigma)
            if n_c == 1 and dof < self.min_dof and can_rerun:
                return Decision("rerun", f"{detail}: above the keep threshold {keep_at:.1f}, but the noise "
                                         f"estimate has only {dof} dof: confirming with another seed", d, z, sigma)
            return Decision("keep", f"{detail} >= keep threshold {keep_at:.1f}", d, z, sigma)
        if z >= rerun_at and can_rerun:
            return Decision("rerun", f"{detail}: between {rerun_at:.1f} and {keep_at:.1f}, rerunning with "
                                     f"another seed (run {n_c + 1} of {self.max_runs})", d, z, sigma)
        if z >= rerun_at:
            return Decision("discard", f"{detail}: below the keep threshold {keep_at:.1f} after {n_c} runs", d, z, sigma)
        return Decision("discard", f"{detail}: below the rerun threshold {rerun_at:.1f}", d, z, sigma)


POLICIES = {"noise": NoisePolicy, "greedy": GreedyPolicy}


def make_policy(name: str = "noise", **options: Any) -> NoisePolicy | GreedyPolicy:
    """A policy by name (``noise`` or ``greedy``) with its options (e.g. ``z_keep=3.0``, ``baseline_seeds=3``)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for the {name} policy: {exc}") from None


def held_out_doubt(val_gain: float, test_gain: float | None, sigma: float | None) -> str:
    """Why a change that would be kept looks like it fits the validation split only ('' when the test agrees).

    ``val_gain`` / ``test_gain``: how much lower than the best the candidate scored (positive = better) on the
    validation split and on the held-out test split. Coarse on purpose, so that the test split does not
    become a second validation set: the test gain must reach half the val gain, less twice the noise.
    """
    if test_gain is None or val_gain <= 0:
        return ""
    slack = 2.0 * (sigma or 0.0)
    if test_gain >= 0.5 * val_gain - slack:
        return ""
    return (f"val_bpb improved by {val_gain:.6f} but the held-out test split only by {test_gain:+.6f} (at least "
            f"{0.5 * val_gain - slack:+.6f} expected): the change may fit the validation data, not the task")
