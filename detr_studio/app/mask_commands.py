"""The mask tools of the window: the polygon tool, brush and eraser, fill holes, RLE <-> polygons, and mask
from box. Each command builds its edit with `session.mask_tools` (the pixels are the core's: `data.coco`)
and makes it through the session, as one undo step; what it acts on is the session's selection.

- A polygon drawn (N) becomes a new annotation of the panel's class; dragging, inserting and deleting the
  vertices of the selected annotation's polygon replaces its mask.
- A brush stroke (B) adds to the selected annotation's mask, the eraser (Shift+B) takes away from it; with
  nothing selected the brush starts a new annotation. [ and ] change the size.
- Fill holes (H) and the conversions (Shift+P to polygons with the panel's tolerance, Shift+R to RLE) work on
  every selected annotation.
- Mask from box (M): the box drawn goes to the loaded model's mask head on the inference lane; the mask of
  the query that matches it best becomes a new annotation.

In a panoptic dataset the polygon and the strokes go to `PanopticController` instead (paint into a segment,
split one).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject

from detr_studio.data.coco import Edit
from detr_studio.data.coco.mask_edits import polygons_edit
from detr_studio.data.coco.mask_geometry import POLYGONS, RLE
from detr_studio.session import Session, mask_tools
from detr_studio.session.mask_tools import MaskToolError

from .canvas import ANNOTATIONS, Stroke
from .edit_commands import EditController
from .panoptic_commands import PanopticController
from .presenter import ScenePresenter
from .services import Services
from .tool_brush import STEP
from .views import Controller, Views


class MaskController(Controller):
    """See the module docstring."""

    def __init__(
        self,
        session: Session,
        services: Services,
        views: Views,
        presenter: ScenePresenter,
        editing: EditController,
        segments: PanopticController,
        parent: QObject,
    ):
        super().__init__(session, services, views, parent)
        self.canvas = canvas = views.canvas
        self.review_panel = views.review_panel
        self.presenter = presenter
        self.editing = editing
        self.segments = segments
        canvas.brush_changed.connect(lambda r: services.status(f"Brush radius {r:.1f} px", 3_000))
        canvas.message.connect(lambda text: services.status(text, 5_000))
        canvas.polygon_drawn.connect(self.add_polygon)
        canvas.polygon_edited.connect(self.edit_polygon)
        canvas.stroke_finished.connect(self.apply_stroke)

    def _try(self, build: Callable[[], tuple[Edit, int] | Edit], text: str) -> int | bool:
        """Build an edit (reporting why not in the status bar) and make it as one undo step; returns the
        annotation id the builder names, or whether the edit was made."""
        try:
            built = build()
        except MaskToolError as exc:
            self.services.status(str(exc).capitalize(), 6_000)
            return False
        edit, key = built if isinstance(built, tuple) else (built, None)
        if not self.session.apply(edit, text):
            return False
        return key if key is not None else True

    def _selected(self) -> list[int]:
        return self.editing.editable_selection()

    def _can_edit(self) -> bool:
        if self.session.doc is None or self.session.current_image_id is None:
            return False
        if not self.session.editable:
            self.services.status("A panoptic dataset is edited by its segments (see the Tools menu)", 5_000)
            return False
        return True

    def _on_segments(self) -> bool:
        return self.session.doc is not None and self.session.doc.is_panoptic

    # ---- tools -------------------------------------------------------------------------------------------

    def start(self, mode: str) -> None:
        """Switch the canvas to a drawing tool ("polygon", "brush", "erase", "mask_box")."""
        if (self._on_segments() and self.segments.can_edit()) or self._can_edit():
            self.presenter.set_layer_visible(ANNOTATIONS, True)
            self.canvas.set_mode(mode)

    def brush_smaller(self) -> None:
        self.canvas.scale_brush(1 / STEP)

    def brush_larger(self) -> None:
        self.canvas.scale_brush(STEP)

    def next_object(self) -> None:
        self.canvas.cycle(1)

    def previous_object(self) -> None:
        self.canvas.cycle(-1)

    # ---- polygons ----------------------------------------------------------------------------------------

    def add_polygon(self, points: list[tuple[float, float]]) -> int | None:
        """A polygon drawn on the canvas becomes a new annotation of the panel's class; returns its id.
        (Panoptic: it paints into or splits the selected segment.)"""
        if self._on_segments():
            self.segments.polygon(points)
            return None
        if not self._can_edit():
            return None
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        cid = self.editing.new_box_category()
        new = self._try(lambda: mask_tools.polygon_annotation(doc, iid, points, cid), "draw polygon")
        if isinstance(new, bool):
            return None
        self.canvas.select(ANNOTATIONS, [new])
        return new

    def edit_polygon(self, annotation_id: int, polygons: list[list[float]]) -> bool:
        """The user moved, inserted or deleted a vertex of an annotation's polygon."""
        doc = self.session.doc
        made = (
            doc is not None
            and self._can_edit()
            and bool(self._try(lambda: polygons_edit(doc, annotation_id, polygons), "edit polygon"))
        )
        if not made:
            self.presenter.refresh_boxes()  # the polygon goes back to what the document holds
        return made

    # ---- brush and eraser --------------------------------------------------------------------------------

    def apply_stroke(self, stroke: Stroke) -> int | None:
        """A brush stroke paints into the one selected annotation's mask (the eraser takes away); with none
        selected, the brush starts a new annotation of the panel's class. Returns the annotation's id.
        (Panoptic: the stroke paints into, erases from or splits the selected segment.)"""
        if self._on_segments():
            self.segments.stroke(stroke)
            return None
        if not self._can_edit():
            return None
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        selected = self._selected()
        if len(selected) > 1:
            self.services.status("Select one annotation to paint into (or none for a new one)", 6_000)
            return None
        target = selected[0] if selected else None
        cid = self.editing.new_box_category()
        text = "erase" if stroke.erase else "brush"
        done = self._try(
            lambda: mask_tools.stroke_edit(doc, iid, target, stroke.points, stroke.radius, stroke.erase, cid),
            text,
        )
        if isinstance(done, bool):
            self.canvas.drop_stroke_preview()
            return None
        self.canvas.select(ANNOTATIONS, [done])
        return done

    # ---- whole masks -------------------------------------------------------------------------------------

    def fill_holes(self) -> bool:
        doc, ids = self.session.doc, self._selected()
        if doc is None or not ids or not self._can_edit():
            return False
        return bool(self._try(lambda: mask_tools.fill_holes(doc, ids), "fill holes"))

    def to_polygons(self) -> bool:
        """The selected masks traced into polygons, to the tolerance set in the panel."""
        return self._convert(POLYGONS, "masks to polygons")

    def to_rle(self) -> bool:
        return self._convert(RLE, "masks to RLE")

    def _convert(self, form: str, text: str) -> bool:
        doc, ids = self.session.doc, self._selected()
        if doc is None or not ids or not self._can_edit():
            return False
        tolerance = self.review_panel.tolerance_spin.value()
        return bool(self._try(lambda: mask_tools.convert(doc, ids, form, tolerance), text))
