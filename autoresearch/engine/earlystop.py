"""Stopping a hopeless training early (issue 15): the judge, pure and Textual-free.

While an experiment trains, the data server records its smoothed training loss at every 1% of the budget
(``metrics["loss_curve"]``, see :mod:`autoresearch.harness.dataserver`). The judge compares that curve, at
equal progress, with the curves of reference trainings that ended with a known val_bpb: the baseline's
seeds and the best experiment's. From each reference ``R`` it projects where the running training would
end if its gap to ``R`` at this point held to the end::

    projected_R = val_bpb_R + (loss(p) - loss_R(p)) / c

``c`` converts training loss (nats per token) into val bits per byte: the baseline seeds' own ratio of
final smoothed loss to val_bpb. The training is stopped only when the most hopeful of these projections is
worse than the best val_bpb by more than ``k`` times the spread at that point (the baseline seeds' curves'
spread there, the measured val_bpb noise, or a floor: the largest), for ``persist`` points in a row, and
only between ``min_progress`` and 90% of the budget.

What keeps it honest:
- the loss is the script's word; a script that reports a low loss is only scored normally, one that reports a
  high loss only hurts itself. A reference is a different matter (a kept change that reported a falsely low
  curve would get later runs stopped): the most hopeful projection counts, the baseline (the user's script,
  not the agent's) must be among the references, and an agent's reference whose final loss does not agree
  with its own val_bpb the way the baseline's do is not used;
- a training whose schedule differs from a reference's (the LR warmup or warmdown, the final LR, the
  momentum warm-up, the functions that compute them, dropout or label smoothing) is not compared with it:
  early loss is not comparable across schedules. Without a usable baseline reference nothing is stopped.
"""

from __future__ import annotations

import ast
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

Curve = Sequence[Sequence[float]]  # [(progress, smoothed loss), ...], progress ascending

# knobs that change what the loss at a given progress means: a different value makes curves incomparable
SCHEDULE_KNOBS = ("WARMUP_FRAC", "WARMDOWN_FRAC", "FINAL_LR_FRAC", "MUON_WARMUP_STEPS", "MUON_MOMENTUM",
                  "MUON_MOMENTUM_START", "WARMUP_STEPS", "WARMDOWN_STEPS", "COOLDOWN_FRAC")
SCHEDULE_WORDS = ("DROPOUT", "SMOOTHING", "Z_LOSS", "ZLOSS", "SCHEDULE")
SCHEDULE_FUNCTIONS = ("lr_multiplier", "muon_momentum", "get_lr", "lr_schedule", "get_lr_multiplier")
WINDOW = 0.1  # the comparison is over the last 10% of the budget: one point of a small run's curve is noisy
MAX_PROGRESS = 0.9  # past this, stopping saves too little to be worth a wrong stop
MARGIN_FLOOR = 0.005  # bits per byte: never stop on a difference smaller than this
# an agent's reference: its loss-to-val_bpb ratio (over the last 10%) within 8% of the baseline's. The template's
# own seeds spread 1.97-2.16 around 2.02 on the recorded CPU curves: a tighter bar refused honest references.
CONSISTENCY = 0.08
# a training's first loss against the references' at the same progress: outside this band (a loss divided or
# multiplied by the accumulation steps, say) it measures something else. Wide: a slow start is not a scale.
START_SCALE = (0.67, 1.5)


@dataclass(frozen=True)
class Mode:
    name: str
    min_progress: float  # never before this share of the budget
    k: float  # how many spreads worse than the best
    persist: int  # consecutive curve points (1% apart) that must agree


MODES: dict[str, Mode | None] = {
    "off": None,
    # calibrated with benchmarks/early_stop.py on this project's recorded CPU curves: at 3 spreads, 9 of 220
    # near-best runs (4%) were stopped over 50 replayed nights; at 4, none (and 48% of all runs still were)
    "safe": Mode("safe", 0.3, 4.0, 3),
    "aggressive": Mode("aggressive", 0.2, 2.5, 3),
}
DEFAULT_MODE = "safe"


def mode_for(name: str | None) -> Mode | None:
    """The mode called ``name`` (None: the default); ValueError for an unknown one."""
    key = (name or DEFAULT_MODE).strip().lower()
    if key not in MODES:
        raise ValueError(f"early stop must be one of {', '.join(MODES)}, got {name!r}")
    return MODES[key]


# ----------------------------------------------------------------------------------------------------
# the schedule of a script


def schedule_signature(source: str) -> str:
    """What of ``source`` decides the learning-rate (and momentum) schedule and the meaning of its loss: the
    values of the schedule knobs and the code of the schedule functions, as one comparable string. Two
    scripts with the same signature can be compared at equal progress. A script that does not parse gets a
    signature of its own (it will not train anyway)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "unparsable"
    parts: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in SCHEDULE_KNOBS or (name.isupper() and any(w in name for w in SCHEDULE_WORDS)):
                parts.append(f"{name}={ast.dump(node.value)}")
        elif isinstance(node, ast.FunctionDef) and node.name in SCHEDULE_FUNCTIONS:
            body = node.body[1:] if node.body and _is_docstring(node.body[0]) else node.body
            parts.append(f"def {node.name}({ast.dump(node.args)}):{''.join(ast.dump(s) for s in body)}")
    return "\n".join(sorted(parts))


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def schedule_difference(a: str, b: str) -> str:
    """The names whose schedule part differs between two signatures ('' when they agree)."""
    def names(sig: str) -> dict[str, str]:
        out = {}
        for part in sig.splitlines():
            key = part.split("=", 1)[0] if not part.startswith("def ") else part[4:].split("(", 1)[0]
            out[key] = part
        return out
    na, nb = names(a), names(b)
    return ", ".join(sorted(k for k in set(na) | set(nb) if na.get(k) != nb.get(k)))


# ----------------------------------------------------------------------------------------------------
# curves


def clean_curve(raw: Any) -> list[tuple[float, float]]:
    """A recorded curve as (progress, loss) pairs, ascending, finite; junk dropped."""
    out: list[tuple[float, float]] = []
    if not isinstance(raw, (list, tuple)):
        return out
    for point in raw:
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            continue
        p, loss = point
        if isinstance(p, bool) or isinstance(loss, bool) or not isinstance(p, (int, float)) or not isinstance(loss, (int, float)):
            continue
        if math.isfinite(p) and math.isfinite(loss) and 0.0 <= p <= 1.0 and (not out or p > out[-1][0]):
            out.append((float(p), float(loss)))
    return out


def at(curve: Curve, p: float) -> float | None:
    """The curve's loss at progress ``p`` (linear between points); None outside the recorded range."""
    if not curve or p < curve[0][0] or p > curve[-1][0]:
        return None
    lo, hi = 0, len(curve) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if curve[mid][0] <= p:
            lo = mid
        else:
            hi = mid
    (p0, l0), (p1, l1) = curve[lo], curve[hi]
    if p1 == p0:
        return float(l0)
    return float(l0 + (l1 - l0) * (p - p0) / (p1 - p0))


def level(curve: Curve, p: float, window: float = WINDOW) -> float | None:
    """The curve's mean loss over ``[p - window, p]`` (1% steps; what the curve has of it), None when it has
    nothing at ``p``. Steadier than one point: the loss of a few steps swings with the batches."""
    if at(curve, p) is None:
        return None
    start = max(curve[0][0], p - window)
    n = max(1, int(round((p - start) / 0.01)))
    values = [v for i in range(n + 1) if (v := at(curve, start + (p - start) * i / n)) is not None]
    return sum(values) / len(values)


@dataclass(frozen=True)
class Reference:
    """A finished training to compare with: its curve, its val_bpb, its script's schedule signature.
    ``trusted``: the baseline (the user's script); an agent's kept change is not."""

    curve: tuple[tuple[float, float], ...]
    val_bpb: float
    schedule: str
    trusted: bool
    label: str = ""

    @property
    def ratio(self) -> float | None:
        """Smoothed loss over the last 10% of its budget per val bit-per-byte (None without a usable curve)."""
        if len(self.curve) < 10 or self.curve[-1][0] < 0.8 or not self.val_bpb > 0:
            return None
        end = level(self.curve, self.curve[-1][0])
        return end / self.val_bpb if end is not None else None


@dataclass(frozen=True)
class Stop:
    """The judge's decision to stop: where, the projection and the bar it crossed."""

    progress: float
    projected: float
    best: float
    margin: float

    @property
    def reason(self) -> str:
        return (f"{_STOPPED}{self.progress:.0%} (projected {self.projected:.4f}, best {self.best:.4f}, "
                f"margin {self.margin:.4f})")


_STOPPED = "stopped early at "


def stopped_at(reason: str) -> str | None:
    """'34%' for a decision's reason that says the training was stopped early at 34% (None otherwise)."""
    if not reason.startswith(_STOPPED):
        return None
    share = reason[len(_STOPPED):].split(" ", 1)[0]
    return share if share.endswith("%") else None


class Judge:
    """Decides, point by point, whether a running training is hopeless. Build one per training; feed
    :meth:`check` the curve as it grows (it looks at the points it has not seen yet)."""

    def __init__(self, mode: Mode | None, references: Iterable[Reference], *, best_bpb: float | None,
                 schedule: str, sigma: float | None = None) -> None:
        self.mode = mode
        self.best_bpb = best_bpb
        self.sigma = sigma if sigma is not None and math.isfinite(sigma) and sigma > 0 else None
        self.off_reason = ""
        refs = [r for r in references if r.ratio is not None]
        same = [r for r in refs if r.schedule == schedule]
        trusted = [r for r in same if r.trusted]
        base = [r for r in refs if r.trusted]
        self.c: float | None = statistics.median(r.ratio for r in base) if base else None  # type: ignore[misc]
        self.references: list[Reference] = []
        self.spread_refs: list[Reference] = trusted
        self.against = "the baseline's seeds"
        agreeing = [r for r in same if not r.trusted and self.c and abs(r.ratio / self.c - 1) <= CONSISTENCY]  # type: ignore[operator]
        if mode is None:
            self.off_reason = "early stopping is off"
        elif best_bpb is None:
            self.off_reason = "no best val_bpb yet"
        elif not base:
            self.off_reason = "the baseline has no loss curve"
        elif trusted:
            self.references = trusted + agreeing
        elif len(agreeing) >= 2:
            # a kept change of the schedule, confirmed with more seeds, whose curves agree with their scores the way
            # the baseline's do: the reference for changes that keep its schedule (its seeds give the spread)
            self.references = self.spread_refs = agreeing
            self.against = f"the best's {len(agreeing)} trainings (its schedule: not the baseline's)"
        else:
            self.off_reason = ("its schedule differs from the baseline's (" + schedule_difference(base[0].schedule, schedule)
                               + ")" + (" and the best's has too few trainings to compare with" if same else ""))
        self._seen = 0
        self._run = 0
        self.stop: Stop | None = None

    @property
    def active(self) -> bool:
        return bool(self.references) and self.mode is not None

    def margin(self, p: float) -> float:
        """``k`` times the spread at progress ``p``, in bits per byte."""
        assert self.mode is not None and self.c
        spread = 0.0
        values = [v for v in (level(r.curve, p) for r in self.spread_refs) if v is not None]
        if len(values) >= 2:
            spread = statistics.stdev(values) / self.c
        return self.mode.k * max(spread, self.sigma or 0.0, MARGIN_FLOOR)

    def projection(self, p: float, loss: float) -> float | None:
        """The most hopeful projected val_bpb of a training whose :func:`level` is ``loss`` at ``p`` (None: no
        reference reaches ``p``)."""
        assert self.c
        values = [r.val_bpb + (loss - ref) / self.c for r in self.references if (ref := level(r.curve, p)) is not None]
        return min(values) if values else None

    def replay(self, curve: Curve) -> Stop | None:
        """Judge a recorded curve point by point, as the data server would have while it trained (benchmarks)."""
        for n in range(1, len(curve) + 1):
            if (stop := self.check(curve[:n])) is not None:
                return stop
        return None

    def check(self, curve: Curve) -> Stop | None:
        """The decision after the curve's new points: a :class:`Stop` once it is hopeless (and from then on)."""
        if self.stop is not None or not self.active:
            return self.stop
        assert self.mode is not None and self.best_bpb is not None
        points = clean_curve(curve)
        if points and self._seen == 0:
            p0, first = points[0]
            theirs = [v if (v := at(r.curve, p0)) is not None else r.curve[0][1] for r in self.references]
            start = statistics.median(theirs)
            if start > 0 and not START_SCALE[0] <= first / start <= START_SCALE[1]:
                self.references = []
                self.off_reason = (f"its first loss {first:.3f} is not on the references' scale ({start:.3f} at "
                                   f"{p0:.0%}): it reports another quantity")
                return None
        for p, _ in points[self._seen:]:
            self._seen += 1
            if p < self.mode.min_progress or p > MAX_PROGRESS:
                self._run = 0
                continue
            loss = level(points, p)
            projected = self.projection(p, loss) if loss is not None else None
            margin = self.margin(p)
            if projected is not None and projected > self.best_bpb + margin:
                self._run += 1
                if self._run >= self.mode.persist:
                    self.stop = Stop(progress=p, projected=projected, best=self.best_bpb, margin=margin)
                    return self.stop
            else:
                self._run = 0
        return None


# ----------------------------------------------------------------------------------------------------
# from a run's ledger


def references_from(experiments: Iterable[Any], best: Any, source_at: Callable[[str], str]) -> list[Reference]:
    """The references for the next experiment: the baseline's seeds (trusted) and, when the best is an agent's
    change, its trainings. ``experiments`` and ``best`` are :class:`~autoresearch.engine.experiments.Experiment`s;
    ``source_at(commit)`` is the train script at a commit (its schedule signature is taken from it)."""
    signatures: dict[str, str] = {}

    def signature(commit: str | None) -> str | None:
        if not commit:
            return None
        if commit not in signatures:
            try:
                signatures[commit] = schedule_signature(source_at(commit))
            except Exception:  # noqa: BLE001 - an unreadable commit: no reference from it
                return None
        return signatures[commit]

    chosen = []
    baseline = next((e for e in experiments if e.kind == "baseline" and e.status == "keep"), None)
    if baseline is not None:
        chosen.append((baseline, True))
    if best is not None and (baseline is None or best.index != baseline.index) and best.status == "keep":
        chosen.append((best, False))
    refs = []
    for exp, trusted in chosen:
        sig = signature(exp.commit)
        if sig is None:
            continue
        for t in exp.trainings:
            curve = clean_curve((t.metrics or {}).get("loss_curve"))
            if t.ok and curve:
                refs.append(Reference(curve=tuple(curve), val_bpb=float(t.val_bpb), schedule=sig, trusted=trusted,
                                      label=f"exp {exp.index} seed {t.seed}"))
    return refs
