"""The editing commands of the window: draw, move, resize, nudge, delete, duplicate, relabel, mark reviewed,
undo and redo, and the class manager. Each one builds its edit with `session.editing` and makes it through
the session, as one undo step; what is selected is the session's selection. In a panoptic dataset, delete
and relabel act on the selected segments (``segments``, the `PanopticController`).
"""

from __future__ import annotations

from PySide6.QtCore import QRectF
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog

from detr_studio.common.text import plural
from detr_studio.data.coco import Relabel, RemoveAnnotations, SetImageReviewed
from detr_studio.session import Session
from detr_studio.session import editing as edits
from detr_studio.session.objects import ANNOTATION

from .canvas import ANNOTATIONS
from .class_manager import ClassManager
from .panoptic_commands import PanopticController
from .presenter import ScenePresenter
from .services import Services
from .views import Controller, Views


def box_of(rect: QRectF) -> list[float]:
    """A QRectF in image pixels -> COCO [x, y, w, h]."""
    return [rect.x(), rect.y(), rect.width(), rect.height()]


class EditController(Controller):
    """See the module docstring. ``undo_redo`` are the window's undo and redo actions (the class manager
    takes them too, so Ctrl+Z works while it has focus)."""

    def __init__(self, session: Session, services: Services, views: Views, presenter: ScenePresenter):
        super().__init__(session, services, views, views.window)
        self.canvas = canvas = views.canvas
        self.review_panel = views.review_panel
        self.presenter = presenter
        self.dialog_parent = views.window
        self.undo_redo: list[QAction] = []
        self.class_manager: ClassManager | None = None
        self.segments: PanopticController | None = None
        canvas.box_drawn.connect(self.add_box)
        canvas.box_edited.connect(self._on_box_edited)
        canvas.delete_requested.connect(self.delete_selected)
        canvas.relabel_requested.connect(self.relabel_dialog)
        canvas.nudge_requested.connect(self.nudge_selected)
        presenter.categories_changed.connect(self._refresh_class_manager)

    def _editable(self) -> bool:
        if self.session.doc is None or self.session.current_image_id is None:
            return False
        if not self.session.editable:
            doc = self.session.doc
            reason = doc.read_only_reason if doc is not None and doc.read_only else None
            self.services.status(
                reason or "A panoptic dataset is edited by its segments: select one by its pixels", 5_000
            )
            return False
        return True

    def _on_segments(self) -> bool:
        """Whether the commands act on segments (a panoptic dataset) rather than annotations."""
        return self.segments is not None and self.session.doc is not None and self.session.doc.is_panoptic

    def editable_selection(self) -> list[int]:
        """The selected annotations that may change: locked ones are left out (and the status bar says so)."""
        return self.unlocked(ANNOTATION, self.session.selection.annotation_ids, "annotations")

    def start_drawing(self) -> None:
        if self._editable():
            self.presenter.set_layer_visible(ANNOTATIONS, True)
            self.canvas.set_mode("draw")

    def new_box_category(self) -> int | None:
        data = self.review_panel.class_combo.currentData()
        return int(data) if data is not None else None

    def add_box(self, rect: QRectF, category_id: int | None = None) -> int | None:
        """Add a human box (image pixels) of ``category_id`` (default: the panel's class); returns its id."""
        if not self._editable():
            return None
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        cid = category_id if category_id is not None else self.new_box_category()
        edit, new = edits.new_box(doc, iid, box_of(rect), cid)
        if not self.session.apply(edit, "draw box"):
            return None
        self.canvas.select(ANNOTATIONS, [new])
        return new

    def move_box(self, annotation_id: int, rect: QRectF) -> bool:
        """Give an annotation a new box (image pixels): a move or a resize."""
        if not self._editable():
            return False
        assert self.session.doc is not None
        return self.session.apply(edits.moved_box(self.session.doc, annotation_id, box_of(rect)), "move box")

    def _on_box_edited(self, annotation_id: int, rect: QRectF) -> None:
        if not self.move_box(annotation_id, rect):
            self.presenter.refresh_boxes()

    def nudge_selected(self, dx: float, dy: float) -> None:
        ids = self.editable_selection()
        if not ids or not self._editable():
            return
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        edit = edits.nudged(doc, iid, ids, dx, dy)
        self.session.apply(edit, "nudge", merge_key=(edits.NUDGE, tuple(sorted(ids))))

    def delete_selected(self) -> None:
        """Del: the vertex under the cursor of the selected polygon, else the selected annotations."""
        if self.canvas.delete_vertex():
            return
        if self._on_segments():
            self.segments.delete()  # type: ignore[union-attr]
            return
        ids = self.editable_selection()
        if ids and self._editable():
            self.session.apply(RemoveAnnotations(ids), f"delete {plural(len(ids), 'box', 'boxes')}")

    def duplicate_selected(self) -> None:
        ids = self.editable_selection()
        if not ids or not self._editable():
            return
        doc, iid = self.session.doc, self.session.current_image_id
        assert doc is not None and iid is not None
        edit, copies = edits.duplicates(doc, iid, ids)
        if self.session.apply(edit, "duplicate"):
            self.canvas.select(ANNOTATIONS, copies)

    def relabel_selected(self, category_id: int) -> bool:
        if self._on_segments():
            ok = self.segments.relabel(category_id)  # type: ignore[union-attr]
            if ok:
                self.review_panel.class_combo.setCurrentIndex(
                    self.review_panel.class_combo.findData(category_id)
                )
            return ok
        ids = self.editable_selection()
        if not ids or not self._editable():
            return False
        name = self.presenter.palette().category_name(category_id)
        ok = self.session.apply(Relabel(ids, category_id), f"relabel to {name}")
        if ok:
            self.review_panel.class_combo.setCurrentIndex(self.review_panel.class_combo.findData(category_id))
        return ok

    def relabel_to_index(self, index: int) -> None:
        doc = self.session.doc
        if doc is not None and 0 <= index < len(doc.categories):
            self.relabel_selected(doc.categories[index].id)

    def relabel_dialog(self) -> None:
        doc = self.session.doc
        segments = self._on_segments()
        ids = self.segments.selected() if segments else self.editable_selection()  # type: ignore[union-attr]
        if doc is None or not ids:
            return
        names = [c.name for c in doc.categories]
        if segments:
            current = next(
                s.category_id for s in doc.segments_for(self.session.current_image_id) if s.id == ids[0]
            )
        else:
            current = doc.annotation(ids[0]).category_id
        start = next((i for i, c in enumerate(doc.categories) if c.id == current), 0)
        name, ok = QInputDialog.getItem(
            self.dialog_parent, "Relabel", "Class (type to search, or a new name):", names, start, True
        )
        name = name.strip()
        if not ok or not name:
            return
        match = next((c for c in doc.categories if c.name == name), None)
        if match is not None:
            self.relabel_selected(match.id)
        elif segments:
            self.services.status(
                "Add the class first (Edit › Classes…), then relabel the segment to it", 6_000
            )
        elif self._editable():
            self.session.apply(edits.relabelled(doc, ids, name), f"relabel to {name}")

    def toggle_reviewed(self) -> None:
        doc, iid = self.session.doc, self.session.current_image_id
        if doc is None or iid is None:
            return
        self.session.apply(SetImageReviewed(iid, not doc.image(iid).reviewed), "mark reviewed")

    def undo(self) -> None:
        self.session.undo()

    def redo(self) -> None:
        self.session.redo()

    def manage_classes(self) -> ClassManager:
        """Show the class manager (add, rename, merge, colour; each change is an undoable edit)."""
        if self.class_manager is None:
            self.class_manager = ClassManager(
                self.dialog_parent,
                lambda: self.session.doc,
                self.session.apply,
                self.presenter.palette,
                self.undo_redo,
            )
        self.class_manager.show()
        self.class_manager.raise_()
        self.class_manager.activateWindow()
        return self.class_manager

    def _refresh_class_manager(self) -> None:
        if self.class_manager is not None:
            self.class_manager.refresh()
