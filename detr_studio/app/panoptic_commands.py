"""Editing a panoptic dataset in the window: segments are picked by their pixels (a click, Tab, the Objects
dock) and changed as a whole or by the pixels of a region.

- Relabel (L, or 1-9): the selected segments get the class (thing or stuff; a stuff class the image has
  already merges into its segment). Delete (Del): the segments go, their pixels become void.
- Merge (G): the selected segments become one (the largest keeps its id and class).
- Split (K): the next polygon (N) or brush stroke (B) cuts the selected segment: its pixels in the region
  become a new segment of its class.
- Paint: a brush stroke or polygon adds its pixels to the selected segment (with none selected they become
  a new segment of the panel's class); the eraser makes pixels void (only the selected segment's).
- Accepting predictions of a panoptic model (Space, Ctrl+Return) adds the segments the queries made.

Each is one undo step through the session (`session.panoptic_tools`, the core's `data.coco.segment_edits`);
saving writes the changed PNGs and the JSON as one unit (`CocoDocument.save`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject

from detr_studio.data.coco.segment_edits import relabel_segment_edit
from detr_studio.session import Session
from detr_studio.session import panoptic_tools as tools
from detr_studio.session.objects import SEGMENT

from .box_items import ANNOTATIONS
from .services import Services
from .tool_brush import Stroke
from .views import Built, Controller, Views

NOT_EDITABLE = (
    "The folder of this dataset's panoptic PNGs is not known: open the dataset with it to edit segments"
)


class PanopticController(Controller):
    """See the module docstring. ``new_category()`` is the panel's class for new segments."""

    def __init__(
        self,
        session: Session,
        services: Services,
        views: Views,
        new_category: Callable[[], int | None],
        parent: QObject,
    ):
        super().__init__(session, services, views, parent)
        self.canvas = views.canvas
        self.new_category = new_category
        self.splitting = False  # K: the next polygon or stroke splits the selected segment
        session.events.image.connect(lambda _iid: self._stop_splitting())
        session.events.project.connect(lambda _project: self._stop_splitting())

    def can_edit(self) -> bool:
        if self.session.current_image_id is None:
            return False
        if not self.session.panoptic_editable:
            self.services.status(NOT_EDITABLE, 8_000)
            return False
        return True

    def selected(self) -> list[int]:
        """The selected segments that may change (locked ones left out, and the status bar says so)."""
        return self.unlocked(SEGMENT, self.session.selection.segment_ids, "segments")

    def _make(self, build: Callable[[], Built], text: str) -> bool:
        """Build the edit (reporting why not) and make it as one undo step; select the segment it names."""
        made, select = self.make_built(build, text)
        if made and select is not None:
            self.canvas.select(ANNOTATIONS, [select])
        return made

    def _stop_splitting(self) -> None:
        self.splitting = False

    # ---- whole segments ----------------------------------------------------------------------------------

    def relabel(self, category_id: int) -> bool:
        doc, iid, ids = self.session.doc, self.session.current_image_id, self.selected()
        if doc is None or iid is None or not ids or not self.can_edit():
            return False
        builds = [lambda sid=sid: relabel_segment_edit(doc, iid, sid, category_id) for sid in ids]
        return self.session.apply_steps(builds, "relabel segment" if len(ids) == 1 else "relabel segments")

    def merge(self) -> bool:
        """The selected segments become one; the largest keeps its id and class."""
        doc, iid, ids = self.session.doc, self.session.current_image_id, self.selected()
        if doc is None or iid is None or not self.can_edit():
            return False
        areas = {s.id: s.area or 0.0 for s in doc.segments_for(iid)}
        ids.sort(key=lambda sid: -areas.get(sid, 0.0))
        return self._make(lambda: (tools.merge(doc, iid, ids), ids[0] if ids else None), "merge segments")

    def delete(self) -> bool:
        doc, iid, ids = self.session.doc, self.session.current_image_id, self.selected()
        if doc is None or iid is None or not ids or not self.can_edit():
            return False
        return self._make(lambda: tools.delete(doc, iid, ids), "delete segments")

    def start_split(self) -> None:
        """K: the next polygon or brush stroke splits the one selected segment."""
        if not self.can_edit():
            return
        if len(self.selected()) != 1:
            self.services.status("Select the one segment to split first", 6_000)
            return
        self.splitting = True
        if self.canvas.mode not in ("polygon", "brush"):
            self.canvas.set_mode("polygon")
        self.services.status(
            "Split: draw a polygon (or paint with the brush) over the part to cut off", 10_000
        )

    def add_mask(self, pixels: np.ndarray, text: str) -> bool:
        """[H, W] pixels (the model's mask for a drawn box) become a new segment of the panel's class."""
        doc, iid, category = self.session.doc, self.session.current_image_id, self.new_category()
        if doc is None or iid is None or not self.can_edit():
            return False
        return self._make(
            lambda: tools.region_edit(doc, iid, (pixels, None), tools.PAINT, [], category), text
        )

    # ---- regions -----------------------------------------------------------------------------------------

    def _region(self, region_of: Callable[[], object], how: str) -> bool:
        doc, iid = self.session.doc, self.session.current_image_id
        if doc is None or iid is None or not self.can_edit():
            return False
        if self.splitting:
            how = tools.SPLIT
            self.splitting = False
        selected, category = self.selected(), self.new_category()
        text = {
            tools.SPLIT: "split segment",
            tools.ERASE: "erase segment pixels",
            tools.PAINT: "paint segment",
        }

        def build():
            return tools.region_edit(doc, iid, region_of(), how, selected, category)  # type: ignore[arg-type]

        return self._make(build, text[how])

    def polygon(self, points: list[tuple[float, float]]) -> bool:
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        return self._region(lambda: tools.polygon_region(doc, iid, points), tools.PAINT)

    def stroke(self, stroke: Stroke) -> bool:
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        made = self._region(
            lambda: tools.stroke_region(doc, iid, stroke.points, stroke.radius),
            tools.ERASE if stroke.erase else tools.PAINT,
        )
        if not made:
            self.canvas.drop_stroke_preview()
        return made
