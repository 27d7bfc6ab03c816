"""The select tool: a click picks the object under the cursor, a drag moves it, Tab and Shift+Tab step through
every object under the cursor.

Objects under a point are ordered smallest first (a panoptic segment is under the cursor when its pixels are,
and comes before boxes), so a click reaches a small object inside a large one (a ball inside a "tree" region,
a person on "grass") and a prediction under an accepted label. A click on the object already selected keeps
it (so a large box picked with Tab can then be dragged from anywhere inside it), Ctrl+click adds or removes
an object, a click on a label tab picks that tab's box, and a press on empty canvas starts a rubber band.
Resize handles and the vertices and edges of the selected polygon take their presses before picking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QGraphicsView

from .box_items import BoxItem
from .polygon_item import PolygonItem
from .tools import Tool, ToolHost


class PickHost(ToolHost, Protocol):
    """What the select tool needs from the canvas besides a `ToolHost`."""

    def objects_at(self, pos: QPointF) -> list[BoxItem]: ...

    def tab_owner_at(self, event: QMouseEvent) -> BoxItem | None: ...

    def handle_at(self, event: QMouseEvent) -> bool: ...

    def selected_items(self) -> list[BoxItem]: ...

    def select_items(self, items: Sequence[BoxItem]) -> None: ...

    def polygon(self) -> PolygonItem | None: ...

    def item_double_clicked(self, item: BoxItem) -> None: ...


def step_through(candidates: Sequence[BoxItem], selected: Sequence[BoxItem], step: int) -> BoxItem | None:
    """The object Tab (``step`` 1) or Shift+Tab (-1) selects among ``candidates`` (smallest first): the next
    one after the selected one, the first (or last) when none of them is selected."""
    if not candidates:
        return None
    current = next((i for i, c in enumerate(candidates) if c in selected), None)
    if current is None:
        return candidates[0] if step > 0 else candidates[-1]
    return candidates[(current + step) % len(candidates)]


class SelectTool(Tool):
    """See the module docstring."""

    name = "select"
    drag_mode = QGraphicsView.DragMode.RubberBandDrag

    def __init__(self, host: PickHost):
        super().__init__(host)
        self.pick: PickHost = host
        self._dragging: BoxItem | None = None
        self._editing_polygon = False

    def choose(self, pos: QPointF) -> BoxItem | None:
        """The object a plain click at ``pos`` selects (see the module docstring)."""
        candidates = self.pick.objects_at(pos)
        if not candidates:
            return None
        selected = self.pick.selected_items()
        if len(selected) == 1 and selected[0] in candidates:
            return selected[0]
        return candidates[0]

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        button = event.button()
        if button not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton) or not self.has_image:
            return False
        polygon = self.pick.polygon()
        if polygon is not None and polygon.press(pos, button):
            self._editing_polygon = True
            return True
        if button != Qt.MouseButton.LeftButton or self.pick.handle_at(event):
            return False  # a resize handle takes it (Qt hands the press to the handle)
        adding = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        candidates = self.pick.objects_at(pos)
        target = self.pick.tab_owner_at(event) or (
            candidates[0] if adding and candidates else self.choose(pos)
        )
        if target is None:
            return False  # empty canvas: the rubber band
        if adding:
            selected = self.pick.selected_items()
            self.pick.select_items(
                [s for s in selected if s is not target] if target in selected else [*selected, target]
            )
            return True
        if target not in self.pick.selected_items():
            self.pick.select_items([target])
        if target.editable:  # not a prediction, a segment or a locked annotation
            target.begin_edit(pos, None)
            self._dragging = target
        return True

    def move(self, event: QMouseEvent, pos: QPointF) -> bool:
        polygon = self.pick.polygon()
        if self._editing_polygon and polygon is not None:
            polygon.drag(pos)
            return True
        if self._dragging is not None:
            self._dragging.drag_to(pos)
            return True
        if polygon is not None and not event.buttons():
            polygon.hover(pos)
        return False

    def release(self, event: QMouseEvent, pos: QPointF) -> bool:
        if self._editing_polygon:
            self._editing_polygon = False
            polygon = self.pick.polygon()
            if polygon is not None:
                polygon.release()
            return True
        if self._dragging is not None:
            box, self._dragging = self._dragging, None
            box.finish_edit()
            return True
        return False

    def double_click(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        polygon = self.pick.polygon()
        if polygon is not None and polygon.hit(pos) is not None:
            return True  # the first press already inserted or picked the vertex
        target = self.pick.tab_owner_at(event) or self.choose(pos)
        if target is None:
            return False
        self.pick.item_double_clicked(target)
        return True

    def deactivate(self) -> None:
        if self._dragging is not None:
            box, self._dragging = self._dragging, None
            box.finish_edit()
        if self._editing_polygon:
            self._editing_polygon = False
            polygon = self.pick.polygon()
            if polygon is not None:
                polygon.release()
