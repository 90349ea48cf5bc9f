"""The progress plot: val_bpb per experiment, kept points marked, the running-best step line, the noise band.

upstream's progress.png in the terminal, drawn with textual-plot (a maintained native Textual plotting widget).
"""

from __future__ import annotations

from typing import Iterable

from textual_plot import HiResMode, PlotWidget

from ...engine.view import ExperimentRow


def series(rows: Iterable[ExperimentRow]) -> dict[str, list[float]]:
    """The plot's data: every scored experiment, the kept ones, and the running best as a step line."""
    ordered = sorted((r for r in rows if r.val_bpb is not None), key=lambda r: r.index)
    xs, ys, kx, ky, bx, by = [], [], [], [], [], []
    best: float | None = None
    for r in ordered:
        xs.append(float(r.index))
        ys.append(float(r.val_bpb))  # type: ignore[arg-type]
        if r.status == "keep":
            kx.append(float(r.index))
            ky.append(float(r.val_bpb))  # type: ignore[arg-type]
            if best is not None:  # a step: hold the old best up to here, then drop
                bx.append(float(r.index))
                by.append(best)
            best = float(r.val_bpb)  # type: ignore[arg-type]
            bx.append(float(r.index))
            by.append(best)
    if best is not None and xs:
        bx.append(xs[-1])
        by.append(best)
    return {"x": xs, "y": ys, "kept_x": kx, "kept_y": ky, "best_x": bx, "best_y": by}


def y_range(ys: list[float], kept: list[float], sigma: float | None) -> tuple[float, float] | None:
    """A range that shows the kept points and most of the rest (outliers such as a diverged run are cut)."""
    if not ys:
        return None
    ordered = sorted(ys)
    high = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    high = max([high] + kept)
    low = min(ordered[0], *(kept or [ordered[0]]))
    pad = max((high - low) * 0.08, 3 * (sigma or 0.0), 1e-4)
    return low - pad, high + pad


class ProgressPlot(PlotWidget):
    """val_bpb over the experiments of a run; ``show(rows, sigma)`` redraws it."""

    can_focus = False

    DEFAULT_CSS = """
    ProgressPlot { border: round $panel-lighten-2; border-title-color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_pan_and_zoom=False, **kwargs)  # type: ignore[arg-type]
        self.border_title = "val_bpb per experiment"

    def on_mount(self) -> None:
        super().on_mount()
        self.set_xlabel("experiment")
        self.set_ylabel("val_bpb")

    def show(self, rows: Iterable[ExperimentRow], sigma: float | None) -> None:
        data = series(rows)
        self.clear()
        if not data["x"]:
            self.border_subtitle = "no results yet"
            return
        self.border_subtitle = (f"{len(data['x'])} scored, {len(data['kept_x'])} kept"
                                + (f", band = best ± σ {sigma:.4f}" if sigma else ""))
        self.scatter(data["x"], data["y"], marker="·", marker_style="grey50", hires_mode=HiResMode.BRAILLE)
        if sigma and data["best_x"]:
            for sign in (-1, 1):
                self.plot(data["best_x"], [v + sign * sigma for v in data["best_y"]], line_style="grey35",
                          hires_mode=HiResMode.BRAILLE)
        if data["best_x"]:
            self.plot(data["best_x"], data["best_y"], line_style="green", hires_mode=HiResMode.BRAILLE)
        self.scatter(data["kept_x"], data["kept_y"], marker="●", marker_style="bold green")
        span = y_range(data["y"], data["kept_y"], sigma)
        if span:
            self.set_ylimits(*span)
        self.set_xlimits(min(data["x"]) - 0.5, max(data["x"]) + 0.5)
