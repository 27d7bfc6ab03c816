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

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRectF

from detr_studio.data.coco import Edit
from detr_studio.data.coco.mask_edits import polygons_edit
from detr_studio.data.coco.mask_geometry import POLYGONS, RLE
from detr_studio.session import Session, mask_tools
from detr_studio.session.mask_from_box import box_mask_edit

from .canvas import ANNOTATIONS, Stroke
from .edit_commands import EditController
from .panoptic_commands import PanopticController
from .presenter import ScenePresenter
from .services import Services
from .tool_brush import STEP
from .views import Controller, Views

if TYPE_CHECKING:  # torch: imported by the inference lane, never at start
    from detr_studio.infer.box_mask import BoxMask

NO_MODEL_FOR_MASKS = "No model is loaded: mask from box needs one with a mask head (Model > Choose Model)"
NO_MASK_HEAD = (
    "The loaded model ({name}) has no mask head, so it cannot give a mask for a box: choose a segmentation"
    " model (a -panoptic zoo model, or one trained with --masks)"
)


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
        canvas.mask_box_drawn.connect(self.ask_mask_from_box)
        services.worker.box_masked.connect(self._on_box_masked)
        services.worker.box_mask_failed.connect(
            lambda _iid, message: services.report_error(f"Mask from box failed: {message}")
        )

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
        made, new = self.make_built(
            lambda: mask_tools.polygon_annotation(doc, iid, points, cid), "draw polygon"
        )
        if not made or new is None:
            return None
        self.canvas.select(ANNOTATIONS, [new])
        return new

    def edit_polygon(self, annotation_id: int, polygons: list[list[float]]) -> bool:
        """The user moved, inserted or deleted a vertex of an annotation's polygon."""
        doc = self.session.doc
        made = (
            doc is not None
            and self._can_edit()
            and self.make_built(lambda: polygons_edit(doc, annotation_id, polygons), "edit polygon")[0]
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
        made, done = self.make_built(
            lambda: mask_tools.stroke_edit(doc, iid, target, stroke.points, stroke.radius, stroke.erase, cid),
            text,
        )
        if not made or done is None:
            self.canvas.drop_stroke_preview()
            return None
        self.canvas.select(ANNOTATIONS, [done])
        return done

    # ---- whole masks -------------------------------------------------------------------------------------

    def fill_holes(self) -> bool:
        doc, ids = self.session.doc, self._selected()
        if doc is None or not ids or not self._can_edit():
            return False
        return self.make_built(lambda: mask_tools.fill_holes(doc, ids), "fill holes")[0]

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
        return self.make_built(lambda: mask_tools.convert(doc, ids, form, tolerance), text)[0]

    # ---- mask from box -----------------------------------------------------------------------------------

    def ask_mask_from_box(self, rect: QRectF) -> bool:
        """A box drawn in mask-from-box mode: ask the loaded model's mask head (on the inference lane) for
        the mask of the query that matches it best; the answer becomes a new annotation (or, panoptic, a new
        segment) of the panel's class. False, with a message, when there is no model or it has no mask head."""
        doc, iid, info = self.session.doc, self.session.current_image_id, self.session.model_info
        if doc is None or iid is None:
            return False
        if info is None:
            self.services.report_error(NO_MODEL_FOR_MASKS)
            return False
        if not info.supports_masks:
            self.services.report_error(NO_MASK_HEAD.format(name=info.name))
            return False
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        self.services.status(f"Asking {info.name} for the mask in the box…")
        self.services.worker.mask_from_box(iid, doc.image_path(iid), box)
        return True

    def _on_box_masked(self, image_id: int, result: BoxMask) -> None:
        doc = self.session.doc
        if doc is None or image_id != self.session.current_image_id:
            return
        said = f"query {result.query_id}, box IoU {result.iou:.2f}, the model says {self.presenter.label_name(result.label)} {result.score:.2f}"
        if self._on_segments():
            if self.segments.add_mask(result.mask, "mask from box"):
                self.services.status(f"Mask from box: {said}", 10_000)
            return
        model = self.session.model_info.name if self.session.model_info is not None else None
        cid = self.editing.new_box_category()

        def build() -> tuple[Edit, int]:
            return box_mask_edit(doc, image_id, result, category_id=cid, class_names=self.session.class_names,
                                 model=model)  # fmt: skip

        made, new = self.make_built(build, "mask from box")
        if made and new is not None:
            self.canvas.select(ANNOTATIONS, [new])
            self.services.status(f"Mask from box: {said}", 10_000)
