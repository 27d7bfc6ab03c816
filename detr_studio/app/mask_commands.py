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

from PySide6.QtCore import QObject

from detr_studio.session import Session

from .canvas import ANNOTATIONS
from .presenter import ScenePresenter
from .services import Services
from .tool_brush import STEP
from .views import Controller, Views


class MaskController(Controller):
    """See the module docstring."""

    def __init__(
        self, session: Session, services: Services, views: Views, presenter: ScenePresenter, parent: QObject
    ):
        super().__init__(session, services, views, parent)
        self.canvas = canvas = views.canvas
        self.presenter = presenter
        canvas.brush_changed.connect(lambda r: services.status(f"Brush radius {r:.1f} px", 3_000))
        canvas.message.connect(lambda text: services.status(text, 5_000))

    def _can_edit(self) -> bool:
        if self.session.doc is None or self.session.current_image_id is None:
            return False
        if not self.session.editable:
            self.services.status("This dataset cannot be edited here", 5_000)
            return False
        return True

    # ---- tools -------------------------------------------------------------------------------------------

    def start(self, mode: str) -> None:
        """Switch the canvas to a drawing tool ("polygon", "brush", "erase", "mask_box")."""
        if self._can_edit():
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
