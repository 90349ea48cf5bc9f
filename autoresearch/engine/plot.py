"""The progress plot of a run (``autoresearch report``): val_bpb per experiment, in the style of upstream's
``progress.png`` (grey discards, green kept changes with their descriptions, a running-best step line).

matplotlib is imported only inside :func:`render_progress`, and only its object-oriented API with the Agg
canvas is used (no pyplot, no global backend switch): nothing here needs a display or changes the state of a
process that also runs the TUI.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

WIDTH_IN, HEIGHT_IN, DPI = 16.0, 8.0, 100  # 1600 x 800 pixels
LABEL_CHARS = 45

_GREY = "#c8c8c8"
_GREEN = "#2ecc71"
_GREEN_EDGE = "#1e6b3a"
_LINE = "#27ae60"
_TEXT = "#1e7b34"
_REVERT = "#d35400"


@dataclass(frozen=True)
class Point:
    """One experiment with a val_bpb (experiments without one, such as crashes, are not plotted)."""

    x: int  # the experiment's index
    val_bpb: float
    kept: bool  # kept (the baseline included) or a revert that was kept
    label: str = ""
    reverted: bool = False  # a kept change the user took back later
    revert: bool = False  # a revert experiment (it takes a kept change back and becomes the best)


def running_best(points: list[Point]) -> list[tuple[int, float]]:
    """The steps of the running best: (x, val_bpb) at each experiment where the run's best changed.

    Choice, for reverts: the line follows the run's *current best* as the ledger defines it (the latest kept
    experiment with a measured val_bpb), not the lowest value ever measured. A reverted change stays on the
    plot (hollow) and the line keeps its level until the revert is kept; then it steps to the revert's
    val_bpb, usually back up, because the code that measured the lower figure is no longer the best. A revert
    that has no val_bpb yet (not measured) is not a point, so it does not move the line.
    """
    steps: list[tuple[int, float]] = []
    for p in sorted(points, key=lambda p: p.x):
        if p.kept and (not steps or p.val_bpb != steps[-1][1]):
            steps.append((p.x, p.val_bpb))
    return steps


def y_range(points: list[Point]) -> tuple[float, float]:
    """A y range that keeps the kept steps readable: outliers (a broken change at 3.2 bpb when the run is at
    0.98) are clipped and drawn at the edge instead of squashing the plot."""
    values = sorted(p.val_bpb for p in points)
    kept = [p.val_bpb for p in points if p.kept]
    if kept:  # the kept steps decide the window: every one of them is inside, with room above for near misses
        lo_k, hi_k = min(kept), max(kept)
        above, below = 0.6, 0.4
    else:  # nothing kept (a results.tsv whose baseline failed): the middle half of the values, Tukey's fences
        lo_k, hi_k = values[len(values) // 4], values[(len(values) * 3) // 4]
        above = below = 1.5
    span = hi_k - lo_k
    if span <= 0:  # one kept value (or all equal): a window scaled to the spread of the others, else 1 %
        mid = sorted(abs(v - lo_k) for v in values)[len(values) // 2]
        span = max(mid * 2, abs(lo_k) * 0.01, 1e-4)
    top = hi_k + above * span
    bottom = lo_k - below * span
    inside = [v for v in values if bottom <= v <= top]
    lo, hi = min(inside + [lo_k]), max(inside + [hi_k])
    pad = (hi - lo) * 0.06 or span * 0.1
    return lo - pad, hi + pad


def _short(text: str, width: int = LABEL_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def render_progress(points: list[Point], path: str | os.PathLike[str], *, title: str, dpi: int = DPI) -> Path:
    """Draw the plot and write it as a PNG to ``path`` (atomically); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = Path(path)
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=14)
    ax.set_xlabel("Experiment #", fontsize=12)
    ax.set_ylabel("Validation BPB (lower is better)", fontsize=12)
    ax.grid(True, alpha=0.25)
    if not points:
        ax.text(0.5, 0.5, "no experiment has a val_bpb yet", ha="center", va="center", transform=ax.transAxes,
                fontsize=14, color="#777777")
        fig.tight_layout()
        return _save(fig, path)

    lo, hi = y_range(points)  # the window of values shown; the axes may grow above it to fit the labels
    xs = [p.x for p in points]
    x_first, x_last = min(xs), max(xs)
    ax.set_xlim(x_first - max(1.0, 0.02 * (x_last - x_first)), x_last + max(1.0, 0.02 * (x_last - x_first)))
    ax.set_ylim(lo, hi)
    handles: list[Line2D] = []

    inside = [p for p in points if lo <= p.val_bpb <= hi]
    others = [p for p in inside if not p.kept]
    ax.scatter([p.x for p in others], [p.val_bpb for p in others], s=14, c=_GREY, alpha=0.75, zorder=2, linewidths=0)
    handles.append(Line2D([], [], marker="o", ls="", color=_GREY, markersize=5, label="Discarded"))
    off = [p for p in points if p not in inside]
    if off:
        worst = max(off, key=lambda p: abs(p.val_bpb - (lo + hi) / 2))
        handles.append(Line2D([], [], marker="^", ls="", color="#9a9a9a", markersize=6,
                              label=f"Off the scale ({len(off)}; #{worst.x}: {worst.val_bpb:.3f})"))

    steps = running_best(points)
    if steps:
        ax.step([x for x, _ in steps] + [x_last], [y for _, y in steps] + [steps[-1][1]], where="post", color=_LINE,
                linewidth=2, alpha=0.75, zorder=3)

    kept = [p for p in points if p.kept and not p.revert]
    plain = [p for p in kept if not p.reverted]
    hollow = [p for p in kept if p.reverted]
    reverts = [p for p in points if p.revert]
    ax.scatter([p.x for p in plain], [p.val_bpb for p in plain], s=55, c=_GREEN, edgecolors=_GREEN_EDGE,
               linewidths=0.9, zorder=4)
    handles.append(Line2D([], [], marker="o", ls="", markerfacecolor=_GREEN, markeredgecolor=_GREEN_EDGE,
                          markersize=8, label="Kept"))
    if hollow:
        ax.scatter([p.x for p in hollow], [p.val_bpb for p in hollow], s=55, facecolors="white",
                   edgecolors=_GREEN_EDGE, linewidths=1.3, zorder=4)
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor=_GREEN_EDGE,
                              markersize=8, label="Kept, reverted later"))
    if reverts:
        ax.scatter([p.x for p in reverts], [p.val_bpb for p in reverts], s=60, marker="D", c="white",
                   edgecolors=_REVERT, linewidths=1.4, zorder=4)
        handles.append(Line2D([], [], marker="D", ls="", markerfacecolor="white", markeredgecolor=_REVERT,
                              markersize=7, label="Revert (kept)"))
    handles.append(Line2D([], [], color=_LINE, linewidth=2, alpha=0.75, label="Running best"))
    ax.legend(handles=handles, loc="best", fontsize=10, framealpha=0.9)  # "best" avoids the labels too

    labelled = [p for p in kept + reverts if p.label]
    placed: list[tuple[Point, float]] = []
    for _ in range(4):  # lay out, place the labels, grow the axes where labels stick out; again on the new scale
        fig.tight_layout()
        placed, out_top, out_right = _place_labels(ax, canvas.get_renderer(), labelled)
        if out_top <= 0 and out_right <= 0:
            break
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        if out_top > 0:
            y1 += (y1 - y0) * min(out_top / ax.bbox.height * 1.15 + 0.01, 0.5)
        if out_right > 0:
            x1 += (x1 - x0) * min(out_right / ax.bbox.width * 1.15 + 0.01, 0.35)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    for p, lift in placed:
        color = _REVERT if p.revert else _TEXT
        ax.annotate(_short(p.label), (p.x, p.val_bpb), xytext=(_DX, _DY + lift), textcoords="offset points",
                    rotation=_ANGLE, rotation_mode="anchor", fontsize=_FONT, color=color, ha="left", va="bottom",
                    zorder=5, annotation_clip=False, in_layout=False)
        if lift > 4:  # a label pushed up: a faint leader to its marker
            ax.annotate("", (p.x, p.val_bpb), xytext=(_DX, _DY + lift), textcoords="offset points", in_layout=False,
                        arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6, "alpha": 0.45,
                                    "shrinkA": 0, "shrinkB": 4})
    if off:  # at the edge of the final axes, pointing where they are
        y0, y1 = ax.get_ylim()
        pad = (y1 - y0) * 0.012
        for group, marker, y in (([p for p in off if p.val_bpb > hi], "^", y1 - pad),
                                 ([p for p in off if p.val_bpb < lo], "v", y0 + pad)):
            if group:
                ax.scatter([p.x for p in group], [y] * len(group), s=30, marker=marker, c="#9a9a9a", zorder=3,
                           linewidths=0)
    return _save(fig, path)


_ANGLE, _FONT, _DX, _DY = 30.0, 8, 6.0, 5.0  # the labels: rotation (degrees), size and offset from the marker (points)
_MAX_LIFT, _LIFT_STEP = 72.0, 2.0  # how far a label may be pushed up to clear the others (points)


def _place_labels(ax, renderer, points: list[Point]) -> tuple[list[tuple[Point, float]], float, float]:  # type: ignore[no-untyped-def]
    """Where each kept change's label goes: (point, lift in points), and how many pixels the labels stick out
    above and to the right of the axes.

    The labels are rotated text starting beside their marker. Worked out in the labels' own rotated frame, where
    each is a plain rectangle: from the right-most label to the left, each takes the smallest lift (straight up)
    at which it overlaps no label placed so far and no other kept marker. A change kept just after another is
    lower and to the right, so its label would run into the earlier one's; the earlier one moves up instead,
    which keeps every label starting to the right of the step line's drop at its own experiment."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=_FONT)
    px = ax.figure.dpi / 72.0
    cos, sin = math.cos(math.radians(_ANGLE)), math.sin(math.radians(_ANGLE))
    at = {id(p): ax.transData.transform((p.x, p.val_bpb)) for p in points}
    radius = 5.0 * px
    markers = [(p, x * cos + y * sin, -x * sin + y * cos) for p in points for x, y in [at[id(p)]]]
    rects: list[tuple[float, float, float, float]] = []
    out: list[tuple[Point, float]] = []
    top, right = ax.bbox.y1, ax.bbox.x1
    out_top = out_right = 0.0
    gap = 2.5 * px
    for p in sorted(points, key=lambda p: p.x, reverse=True):
        w, h, _ = renderer.get_text_width_height_descent(_short(p.label), prop, ismath=False)
        X, Y = at[id(p)]
        best: tuple[int, float, tuple[float, float, float, float]] | None = None
        lift = 0.0
        while lift <= _MAX_LIFT:
            ax_, ay = X + _DX * px, Y + (_DY + lift) * px
            u, v = ax_ * cos + ay * sin, -ax_ * sin + ay * cos
            rect = (u, u + w, v, v + h)
            hits = sum(1 for r in rects if r[0] < rect[1] + gap and rect[0] < r[1] + gap and r[2] < rect[3] + gap
                       and rect[2] < r[3] + gap)
            hits += sum(1 for q, mu, mv in markers if q is not p and rect[0] - radius < mu < rect[1] + radius
                        and rect[2] - radius < mv < rect[3] + radius)
            if best is None or hits < best[0]:
                best = (hits, lift, rect)
            if hits == 0:
                break
            lift += _LIFT_STEP
        assert best is not None
        _, lift, rect = best
        rects.append(rect)
        out.append((p, lift))
        ax_, ay = X + _DX * px, Y + (_DY + lift) * px
        out_top = max(out_top, ay + w * sin + h * cos - top)
        out_right = max(out_right, ax_ + w * cos - right)
    return out, out_top, out_right


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=fig.dpi)
    os.replace(tmp, path)
    return path
