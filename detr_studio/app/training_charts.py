"""The Training dock's live charts: loss parts per step and AP per epoch (pyqtgraph), with curves that a
resumed run continues instead of drawing over."""

from __future__ import annotations

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


def make_plot(parent: QWidget, left: str, bottom: str, legend_offset: tuple[int, int]) -> pg.PlotWidget:
    """An empty chart; its legend sits at ``legend_offset`` (the corner the curves move away from)."""
    plot = pg.PlotWidget(parent, background="w")
    plot.setMinimumHeight(140)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.addLegend(
        offset=legend_offset,
        labelTextSize="7pt",
        labelTextColor=(40, 40, 40),
        brush=pg.mkBrush(255, 255, 255, 210),
    )
    plot.setMouseEnabled(x=False, y=False)
    return plot


def draw(plot: pg.PlotWidget, series: dict[str, Series], colours: dict, symbols: bool) -> None:
    """Show every series on ``plot`` (one curve per name, made the first time it appears)."""
    items = {item.name(): item for item in plot.listDataItems()}
    for name, points in series.items():
        item = items.get(name)
        if item is None:
            colour = colours.get(name, (120, 120, 120))
            pen = pg.mkPen(colour, width=2 if name in ("total", "AP") else 1)
            extra = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour} if symbols else {}
            item = plot.plot([], [], pen=pen, name=name, **extra)
        item.setData(points.x, points.y)
