"""The Training dock's live charts: loss parts per step and AP per epoch (pyqtgraph), with curves that a
resumed run continues instead of drawing over.

The legend is the chart's title line, above the curves, so that it never hides the last epochs; the epoch
axis is labelled with whole epochs, spaced so that the labels never run together however narrow the dock.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

LOSS_COLOURS = {
    "total": (30, 30, 30),
    "loss_ce": (220, 60, 60),
    "loss_bbox": (40, 110, 220),
    "loss_giou": (30, 160, 90),
    "loss_mask": (200, 140, 20),
    "loss_dice": (150, 60, 190),
}
AP_COLOURS = {"AP": (220, 60, 60), "AP50": (40, 110, 220), "segm_AP": (150, 60, 200), "PQ": (30, 160, 90)}
OTHER_COLOUR = (120, 120, 120)
MIN_LABEL_PX = 36  # the least room one epoch label has on the axis
EPOCH_STEPS = (1, 2, 5)  # label every 1, 2, 5, 10, 20, 50, … epochs


class Series:
    """x/y points of one curve; a point at or before the last x (a resumed run replaying steps) cuts the
    curve back to before it, so a resumed run continues the line instead of drawing over it."""

    def __init__(self) -> None:
        self.x: list[float] = []
        self.y: list[float] = []

    def add(self, x: float, y: float) -> None:
        while self.x and self.x[-1] >= x:
            self.x.pop()
            self.y.pop()
        self.x.append(x)
        self.y.append(y)

    def __len__(self) -> int:
        return len(self.x)


def epoch_step(span: float, length_px: float, min_px: float = MIN_LABEL_PX) -> int:
    """How many epochs apart the axis labels are: the smallest of 1, 2, 5, 10, 20, 50, … that leaves each
    label at least ``min_px`` pixels over an axis of ``length_px`` pixels showing ``span`` epochs."""
    room = max(length_px / min_px, 1.0)
    magnitude = 1
    while True:
        for step in EPOCH_STEPS:
            if span / (step * magnitude) <= room:
                return step * magnitude
        magnitude *= 10


class EpochAxis(pg.AxisItem):
    """A bottom axis labelled with whole epochs only (see `epoch_step`)."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:
        if not math.isfinite(minVal) or not math.isfinite(maxVal) or maxVal <= minVal:
            return []
        step = epoch_step(maxVal - minVal, size)
        first = max(math.ceil(minVal / step) * step, 0)
        return [(float(step), [float(v) for v in range(first, math.floor(maxVal) + 1, step)])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{round(v)}" for v in values]


def make_plot(parent: QWidget, left: str, bottom: str = "") -> pg.PlotWidget:
    """An empty chart: a value axis called ``left`` and an epoch axis (called ``bottom`` when given)."""
    plot = pg.PlotWidget(parent, background="w", axisItems={"bottom": EpochAxis("bottom")})
    plot.setMinimumHeight(92)
    plot.setLabel("left", left)
    if bottom:
        plot.setLabel("bottom", bottom)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setMouseEnabled(x=False, y=False)
    return plot


def legend_html(names: list[str], colours: dict) -> str:
    """The chart's title line: each curve's name in its colour."""
    parts = []
    for name in names:
        r, g, b = colours.get(name, OTHER_COLOUR)
        parts.append(f"<span style='color:rgb({r},{g},{b})'>━ {name}</span>")
    return "&nbsp;&nbsp;".join(parts)


def draw(plot: pg.PlotWidget, series: dict[str, Series], colours: dict, symbols: bool) -> None:
    """Show every series on ``plot`` (one curve per name, made the first time it appears), named in the
    title line."""
    items = {item.name(): item for item in plot.listDataItems()}
    for name, points in series.items():
        item = items.get(name)
        if item is None:
            colour = colours.get(name, OTHER_COLOUR)
            pen = pg.mkPen(colour, width=2 if name in ("total", "AP") else 1)
            extra = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour} if symbols else {}
            item = plot.plot([], [], pen=pen, name=name, **extra)
        item.setData(points.x, points.y)
    plot.setTitle(legend_html(list(series), colours) if series else None, size="8pt")
