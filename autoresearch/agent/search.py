"""A researcher without an LLM: Optuna's TPE over the knobs block (``--agent search``; ``search:random``;
``search:cmaes``: CMA-ES for the continuous knobs, TPE for the choices).

It works with no model and no network, so offline users always have an agent, and it is the honest
baseline to compare LLM agents against. The search space comes from an AST read of the knobs at the first
script it sees (the baseline): learning rates and other positive floats on a log scale around their value,
fractions in [0, 1], sizes as powers of two, depth as a small integer range, booleans as choices; strings
and tuples stay fixed. Each proposal's description records the values it tried ("search: A=1, B=2"), so a
restarted engine hands the finished trials back through the history and the study continues.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..backends.knobs import read_knobs, set_knobs
from .base import Agent, AgentContext, AgentError, Proposal

PREFIX = "search: "
_POW2_NAMES = re.compile(r"(BATCH|WIDTH|HEAD_DIM|WINDOW)")
_FRAC_NAMES = re.compile(r"(FRAC|RATIO|MOMENTUM|DECAY)$")
_FAILED = 1e9  # what a crashed trial scores (optuna minimises)


@dataclass(frozen=True)
class Dim:
    name: str
    kind: str  # "log" | "uniform" | "pow2" | "int" | "bool"
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()


def search_space(knobs: dict[str, Any]) -> list[Dim]:
    """Dimensions for the knobs' current values (see the module docstring)."""
    dims: list[Dim] = []
    for name, value in knobs.items():
        if isinstance(value, bool):
            dims.append(Dim(name, "bool", choices=(False, True)))
        elif isinstance(value, int) and value > 0 and (_POW2_NAMES.search(name) or (value >= 16 and value & (value - 1) == 0)):
            e = int(round(math.log2(value)))
            dims.append(Dim(name, "pow2", choices=tuple(2**k for k in range(max(0, e - 2), e + 3))))
        elif isinstance(value, int) and value >= 50:
            dims.append(Dim(name, "int", low=max(1, value // 4), high=value * 4))
        elif isinstance(value, int) and value > 0:
            dims.append(Dim(name, "int", low=max(1, value - 2), high=value + 2))
        elif isinstance(value, float) and _FRAC_NAMES.search(name) and 0.0 <= value < 1.0:
            if value >= 0.8:  # momentum-like: near 1
                dims.append(Dim(name, "uniform", low=0.8, high=0.99))
            else:  # a fraction of the budget or a decay: a neighbourhood of the current value
                dims.append(Dim(name, "uniform", low=max(0.0, value - 0.3), high=min(0.9, value + 0.3)))
        elif isinstance(value, float) and value > 0:
            dims.append(Dim(name, "log", low=value / 4, high=value * 4))
    return dims


def _round(value: Any) -> Any:
    if isinstance(value, float) and value != 0:
        return float(f"{value:.3g}")
    return value


def format_description(params: dict[str, Any]) -> str:
    return PREFIX + ", ".join(f"{k}={v!r}" for k, v in params.items())


def parse_description(text: str) -> dict[str, Any] | None:
    if not text.startswith(PREFIX):
        return None
    out: dict[str, Any] = {}
    for part in text[len(PREFIX):].split(", "):
        name, _, raw = part.partition("=")
        try:
            out[name] = {"True": True, "False": False}.get(raw, None) if raw in ("True", "False") else (
                int(raw) if re.fullmatch(r"-?\d+", raw) else float(raw))
        except ValueError:
            return None
    return out


class SearchAgent(Agent):
    """TPE (or random) search over the knobs, through the same Proposal interface as LLM agents."""

    reads_notes = False  # it samples numbers: a note in words cannot steer it

    def __init__(self, sampler: str = "tpe", seed: int = 0) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = f"search:{sampler}"
        samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
                    "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                    "cmaes": lambda: optuna.samplers.CmaEsSampler(
                        seed=seed, n_startup_trials=0, warn_independent_sampling=False,
                        independent_sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))}
        if sampler not in samplers:
            raise AgentError(f"unknown search sampler {sampler!r}; choose tpe, random or cmaes")
        self._optuna = optuna
        self.study = optuna.create_study(direction="minimize", sampler=samplers[sampler]())
        self.dims: list[Dim] | None = None
        self._told: set[int] = set()  # experiment indices already given to the study
        # description -> (every sampled value, the sampler's bookkeeping), so a finished experiment is told as
        # the trial it was asked as (CMA-ES needs its generation; after a restart only the description is left)
        self._asked: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def _distributions(self) -> dict[str, Any]:
        d = self._optuna.distributions
        out: dict[str, Any] = {}
        for dim in self.dims or []:
            if dim.kind == "log":
                out[dim.name] = d.FloatDistribution(dim.low, dim.high, log=True)
            elif dim.kind == "uniform":
                out[dim.name] = d.FloatDistribution(dim.low, dim.high)
            elif dim.kind == "int":
                out[dim.name] = d.IntDistribution(int(dim.low), int(dim.high))
            else:
                out[dim.name] = d.CategoricalDistribution(dim.choices)
        return out

    def _learn(self, ctx: AgentContext) -> None:
        """Tell the study every finished experiment it has not seen (also after an engine restart)."""
        dists = self._distributions()
        for row in ctx.history:
            if row["index"] in self._told or row.get("status") in (None, "interrupted"):
                continue
            self._told.add(row["index"])
            description = row.get("description") or ""
            params = parse_description(description)
            if not params or not all(k in dists and _fits(dists[k], v) for k, v in params.items()):
                continue  # the baseline, or another agent's change: not a point of this search space
            params, system_attrs = self._asked.pop(description, (params, {}))
            value = row.get("val_bpb")
            failed = value is None or row.get("status") not in ("keep", "discard")
            self.study.add_trial(self._optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, system_attrs=system_attrs,
                value=_FAILED if failed else float(value)))

    def propose(self, ctx: AgentContext) -> Proposal:
        knobs = {k: v.value for k, v in read_knobs(ctx.script).items()}
        if not knobs:
            raise AgentError("the script has no knobs block to search over")
        if self.dims is None:
            self.dims = search_space(knobs)
        self._learn(ctx)
        dists = self._distributions()
        space = {d.name: dists[d.name] for d in self.dims if d.name in knobs}
        seq_len = int(ctx.profile.get("seq_len") or 1)
        fail = self._optuna.trial.TrialState.FAIL
        for _ in range(20):
            trial = self.study.ask(space)
            # the result comes back through the history (see _learn); the asked trial itself is closed now
            self.study.tell(trial, state=fail)
            params = {k: _round(v) for k, v in trial.params.items()}
            values = _consistent(dict(knobs, **params), seq_len)
            changed = {k: values[k] for k in params if values[k] != knobs[k]}
            if changed:
                description = format_description(changed)
                sampled = {k: values[k] for k in params if _fits(space[k], values[k])}
                asked = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
                self._asked[description] = (sampled, dict(asked.system_attrs))
                return Proposal(description, set_knobs(ctx.script, changed), {"agent": self.name, "trial": trial.number})
        raise AgentError("the search found no new setting of the knobs")

    def repair(self, ctx: AgentContext, proposal: Proposal, feedback: str) -> Proposal | None:
        return None  # a knob setting that fails a check is not repaired: the next proposal samples anew


def _fits(dist: Any, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError, IndexError):
        return False


def _consistent(values: dict[str, Any], seq_len: int) -> dict[str, Any]:
    """Repair combinations the script cannot run: width a multiple of head_dim, whole accumulation steps."""
    if isinstance(values.get("WIDTH"), int) and isinstance(values.get("HEAD_DIM"), int):
        values["HEAD_DIM"] = min(values["HEAD_DIM"], values["WIDTH"])
        values["WIDTH"] -= values["WIDTH"] % values["HEAD_DIM"]
    dev, total = values.get("DEVICE_BATCH_SIZE"), values.get("TOTAL_BATCH_SIZE")
    if isinstance(dev, int) and isinstance(total, int):
        values["TOTAL_BATCH_SIZE"] = max(total, dev * seq_len)
    return values
