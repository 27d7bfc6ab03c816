"""The scene presenter: draws the session on the canvas and keeps the two in step.

It listens to the session's events (a new project or image, an edit, new predictions, the threshold, ghosts,
the selection, hidden and locked objects) and redraws what they change: boxes (or a panoptic image's
segments), the polygon of the selected annotation with its vertices, the mask overlay and the highlight of
the selected segments (both drawn on a background lane, the newest request winning), the attention heatmap,
the inspector and the class lists. The canvas's own selection is the session's selection: a click on the
canvas selects in the session, and a selection made elsewhere (the object list, the review queue) is shown
on the canvas. Hidden objects are not drawn; locked ones are drawn but cannot be moved. Attention head and
probe point are views of this presenter only.
"""

from __future__ import annotations

import contextlib

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from detr_studio.common.text import plural
from detr_studio.data.coco import Segment
from detr_studio.data.coco.mask_edits import is_box_mask
from detr_studio.session import Selection, Session
from detr_studio.session.history import HistoryChange
from detr_studio.session.objects import ANNOTATION, PREDICTION, SEGMENT
from detr_studio.session.project import Project

from .background import Lane
from .box_items import SEGMENTS
from .canvas import ANNOTATIONS, ATTENTION, PREDICTIONS
from .layers import (
    MaskLayer,
    Palette,
    annotation_specs,
    attention_picture,
    draw_masks,
    highlight_picture,
    mask_jobs,
    prediction_specs,
)
from .services import Services
from .views import Controller, Views

NO_SELECTION = "Select a detection to see its query, top classes and no-object probability."


def segment_text(seg: Segment, name: str) -> str:
    """The inspector's text for one panoptic segment."""
    kind = "stuff" if seg.isthing is False else "thing"
    lines = [f"<b>Segment {seg.id}</b> — {name} ({kind})"]
    if seg.area is not None:
        lines.append(f"area: {seg.area:.0f} px")
    if seg.bbox is not None:
        x, y, w, h = seg.bbox
        lines.append(f"box {x:.0f}, {y:.0f}, {w:.0f} × {h:.0f}")
    lines.append("L relabels, Del deletes (void), K splits, G merges with others selected")
    return "<br>".join(lines)


class ScenePresenter(Controller):
    """See the module docstring. ``overlays_ready`` fires when the mask layer of the image shown is drawn;
    ``layer_toggled(layer, visible)`` when a layer is shown or hidden."""

    overlays_ready = Signal()
    layer_toggled = Signal(str, bool)
    categories_changed = Signal()

    def __init__(self, session: Session, services: Services, views: Views, parent: QObject | None = None):
        super().__init__(session, services, views, parent)
        self.canvas = canvas = views.canvas
        self.review_panel = review_panel = views.review_panel
        self.image_panel = views.image_panel
        self.attention_head: int | None = None
        self.probe_point: tuple[float, float] | None = None
        self.overlays = Lane("overlays", parent=self)
        self._overlay_generation = 0
        self._highlight_generation = 0
        self._segment_ids: np.ndarray | None = None  # the id map of the panoptic image shown, once drawn
        self._polygon_shown: tuple | None = None
        self._categories_seen: tuple = ()
        events = session.events
        events.project.connect(self._on_project)
        events.image.connect(self._on_image)
        events.edited.connect(self._on_edited)
        events.predictions.connect(self._on_predictions)
        events.model.connect(lambda _info: self._redraw_predictions())
        events.threshold.connect(self._on_threshold)
        events.ghosts.connect(lambda _on: self.refresh_boxes())
        events.selection.connect(self._on_session_selection)
        events.objects.connect(lambda _iid: self._on_objects())
        canvas.selection_changed.connect(self._on_canvas_selection)
        canvas.pixel_clicked.connect(self.probe_at)
        review_panel.opacity_slider.valueChanged.connect(lambda v: canvas.set_mask_opacity(v / 100.0))
        review_panel.head_combo.currentIndexChanged.connect(
            lambda _i: self.set_head(review_panel.head_combo.currentData())
        )

    # ---- names and colours -------------------------------------------------------------------------------

    def palette(self) -> Palette:
        """Names and colours of the document's classes and the model's labels, for one refresh."""
        return Palette(self.session.doc, self.session.class_names)

    def label_name(self, label: int) -> str:
        """The model's name for a predicted label."""
        return self.palette().label_name(label)

    # ---- session events ----------------------------------------------------------------------------------

    def _on_project(self, _project: Project | None) -> None:
        self.probe_point = None
        self.canvas.show_image(None, 0, 0)  # nothing of the previous project stays on screen
        self.refresh_categories(force=True)

    def _on_image(self, image_id: int | None) -> None:
        doc = self.session.doc
        self.probe_point = None
        self._segment_ids = None
        if doc is None or image_id is None:
            self.canvas.show_image(None, 0, 0)
            return
        info = doc.image(image_id)
        self.canvas.show_image(image_id, info.width, info.height)
        self.refresh_boxes()
        self.refresh_overlays()

    def _on_edited(self, _change: HistoryChange) -> None:
        self.refresh_categories()
        self.refresh_boxes()
        self.refresh_masks()
        self.update_inspector()

    def _on_predictions(self, image_ids: tuple[int, ...] | None) -> None:
        if image_ids is None or self.session.current_image_id in image_ids:
            self._redraw_predictions()

    def _redraw_predictions(self) -> None:
        self.refresh_boxes()
        self.refresh_overlays()
        self.update_inspector()

    def _on_threshold(self, _threshold: float) -> None:
        self.refresh_boxes()
        self.refresh_masks()

    def _on_objects(self) -> None:
        self.refresh_boxes()
        self.refresh_masks()

    # ---- selection: the canvas and the session share one ----------------------------------------------

    def _on_canvas_selection(self) -> None:
        self.session.select(
            annotation_ids=self.canvas.selected_annotation_ids(),
            query_ids=self.canvas.selected_prediction_ids(),
            segment_ids=self.canvas.selected_segment_ids(),
        )
        self.refresh_polygon()
        self.refresh_highlight()
        self.refresh_attention()
        self.update_inspector()

    def _on_session_selection(self, selection: Selection) -> None:
        canvas = self.canvas
        shown = (
            tuple(canvas.selected_annotation_ids()),
            tuple(canvas.selected_prediction_ids()),
            tuple(canvas.selected_segment_ids()),
        )
        if shown != (selection.annotation_ids, selection.query_ids, selection.segment_ids):
            canvas.select_keys(selection.annotation_ids, selection.query_ids, selection.segment_ids)

    # ---- drawing -----------------------------------------------------------------------------------------

    def refresh_boxes(self) -> None:
        """Rebuild the canvas boxes of the current image from the document and the prediction cache."""
        session = self.session
        doc, iid = session.doc, session.current_image_id
        if doc is None or iid is None:
            return
        palette = self.palette()
        kind = SEGMENT if doc.is_panoptic else ANNOTATION
        specs = annotation_specs(doc, iid, palette, session.hidden_keys(kind), session.locked_keys(kind))
        self.canvas.set_annotations(specs, SEGMENTS if doc.is_panoptic else ANNOTATIONS)
        hidden = session.hidden_keys(PREDICTION)
        shown, ghosts = session.visible_predictions(), session.ghost_predictions()
        self.canvas.set_predictions(
            [s for s in prediction_specs(shown, palette) if s.key not in hidden],
            [s for s in prediction_specs(ghosts, palette) if s.key not in hidden],
        )
        self.refresh_polygon()

    def refresh_polygon(self) -> None:
        """The polygon, with its vertices, of the one selected annotation when its mask is polygons (not just
        its box's outline, which the box's handles edit)."""
        session, doc = self.session, self.session.doc
        ids = self.canvas.selected_annotation_ids()
        shown = None
        if doc is not None and not doc.is_panoptic and len(ids) == 1:
            ann = doc.annotation(ids[0])
            box_only = is_box_mask(doc.index.annotation_record(ann.id))  # its handles edit it
            if isinstance(ann.segmentation, list) and ann.segmentation and not box_only:
                editable = session.editable and ann.id not in session.locked_keys(ANNOTATION)
                colour = self.palette().category_colour(ann.category_id)
                shown = (ann.id, ann.segmentation, colour, editable)
        if shown == self._polygon_shown and (shown is None or self.canvas.polygon() is not None):
            return
        self._polygon_shown = shown
        if shown is None:
            self.canvas.set_polygon(None)
        else:
            self.canvas.set_polygon(*shown)

    def refresh_categories(self, force: bool = False) -> None:
        """The class lists (new-box class, image filter) follow the document's categories."""
        doc = self.session.doc
        if doc is None:
            return
        self.categories_changed.emit()  # colours and counts change without a rename
        seen = tuple((c.id, c.name) for c in doc.categories)
        if seen == self._categories_seen and not force:
            return
        self._categories_seen = seen
        self.image_panel.set_classes(seen)
        combo = self.review_panel.class_combo
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for cid, name in seen:
            combo.addItem(name, cid)
        combo.setCurrentIndex(max(combo.findData(current), 0))
        combo.blockSignals(False)

    def refresh_overlays(self) -> None:
        self.refresh_masks()
        self.refresh_attention()

    def refresh_masks(self) -> None:
        """Gather what the mask layer shows (plain data) and draw it on the overlay lane."""
        doc, iid = self.session.doc, self.session.current_image_id
        if doc is None or iid is None:
            return
        store = self.session.store
        predictions = store.get(iid) if self.canvas.visible_layers[PREDICTIONS] else None
        visible = self.session.visible_predictions() if predictions is not None else None
        if visible is not None:
            hidden = self.session.hidden_keys(PREDICTION)
            visible = visible.select(np.array([int(q) not in hidden for q in visible.query_ids], dtype=bool))
        kind = SEGMENT if doc.is_panoptic else ANNOTATION
        jobs = mask_jobs(doc, iid, self.palette(), predictions, visible, self.session.hidden_keys(kind))
        self._overlay_generation += 1
        if not jobs:
            self.canvas.set_mask_overlay(None)
            self.overlays_ready.emit()
            return
        info = doc.image(iid)
        generation = self._overlay_generation
        self.overlays.submit(
            draw_masks, jobs, info.height, info.width, key="masks",
            done=lambda image: self._on_overlay(iid, generation, image),
            failed=lambda exc: self.services.report_error(f"masks: {exc}"),
        )  # fmt: skip

    def _on_overlay(self, image_id: int, generation: int, layer: MaskLayer) -> None:
        if image_id != self.session.current_image_id or generation != self._overlay_generation:
            return
        self.canvas.set_mask_overlay(layer.picture)
        if layer.segment_ids is not None:
            self._segment_ids = layer.segment_ids
            self.canvas.set_segment_map(layer.segment_ids)
            self.refresh_highlight()
        self.overlays_ready.emit()

    def refresh_highlight(self) -> None:
        """Draw the selected segments' pixels (on the overlay lane) over the mask layer."""
        self._highlight_generation += 1
        selected = self.session.selection.segment_ids
        ids, iid = self._segment_ids, self.session.current_image_id
        if ids is None or not selected or iid is None:
            self.canvas.set_highlight(None)
            return
        generation = self._highlight_generation
        self.overlays.submit(
            highlight_picture, ids, tuple(selected), key="highlight",
            done=lambda image: self._on_highlight(iid, generation, image),
            failed=lambda exc: self.services.report_error(f"highlight: {exc}"),
        )  # fmt: skip

    def _on_highlight(self, image_id: int, generation: int, image: QImage | None) -> None:
        if image_id == self.session.current_image_id and generation == self._highlight_generation:
            self.canvas.set_highlight(image)

    def refresh_attention(self) -> None:
        """Decoder attention of the one selected prediction, or encoder attention at the probed pixel."""
        iid = self.session.current_image_id
        entry = self.session.store.get(iid) if iid is not None else None
        selected = self.canvas.selected_prediction_ids()
        picture = attention_picture(
            entry.detections.attention if entry is not None else None,
            selected[0] if len(selected) == 1 else None,
            self.probe_point,
            self.attention_head,
        )
        if picture is None:
            self.canvas.set_attention(None)
        else:
            self.canvas.set_attention(*picture)

    def set_head(self, head: int | None) -> None:
        self.attention_head = head
        self.refresh_attention()

    def set_probe(self, on: bool) -> None:
        if on and self.canvas.mode != "probe":
            self.canvas.set_mode("probe")
            self.set_layer_visible(ATTENTION, True)
        elif not on:
            if self.canvas.mode == "probe":
                self.canvas.set_mode("select")
            self.probe_point = None
            self.refresh_attention()

    def probe_at(self, x: float, y: float) -> None:
        self.probe_point = (x, y)
        self.canvas.scene().clearSelection()
        self.refresh_attention()

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        if self.canvas.visible_layers[layer] == visible:
            self.layer_toggled.emit(layer, visible)
            return
        self.canvas.set_layer_visible(layer, visible)
        if layer == PREDICTIONS:
            self.refresh_masks()
        self.layer_toggled.emit(layer, visible)

    # ---- the inspector -----------------------------------------------------------------------------------

    def update_inspector(self) -> None:
        text = NO_SELECTION
        doc, iid = self.session.doc, self.session.current_image_id
        predicted = self.canvas.selected_prediction_ids()
        annotated = self.canvas.selected_annotation_ids()
        segments = self.canvas.selected_segment_ids()
        store = self.session.store
        entry = store.get(iid) if iid is not None else None
        if len(predicted) == 1 and entry is not None and iid is not None:
            with contextlib.suppress(KeyError):
                text = self._query_text(iid, predicted[0])
        elif len(annotated) == 1 and doc is not None and not doc.is_panoptic:
            ann = doc.annotation(annotated[0])
            x, y, w, h = ann.bbox
            lines = [
                f"<b>Annotation {ann.id}</b> — {self.palette().category_name(ann.category_id)}",
                f"source: {ann.source}",
            ]
            if ann.model:
                lines.append(f"model: {ann.model}")
            if ann.score is not None:
                lines.append(f"score: {ann.score:.3f}")
            lines.append(f"review: {ann.review}")
            lines.append(f"box {x:.0f}, {y:.0f}, {w:.0f} × {h:.0f}")
            text = "<br>".join(lines)
        elif len(segments) == 1 and doc is not None and doc.is_panoptic and iid is not None:
            seg = next((s for s in doc.segments_for(iid) if s.id == segments[0]), None)
            if seg is not None:
                text = segment_text(seg, self.palette().category_name(seg.category_id))
        elif segments:
            text = f"{len(segments)} segments selected (G merges them)"
        elif predicted or annotated:
            text = (
                f"{plural(len(annotated), 'annotation')} and {plural(len(predicted), 'prediction')} selected"
            )
        self.review_panel.inspector.setText(text)

    def _query_text(self, image_id: int, query: int) -> str:
        store = self.session.store
        row = store.row_of(image_id, query)
        dets = store.get(image_id).detections  # type: ignore[union-attr]
        x0, y0, x1, y1 = (float(v) for v in dets.boxes[row])
        lines = [f"<b>Query {query}</b> — score {float(dets.scores[row]):.3f}"]
        lines += [f"{self.label_name(c)}: {p:.3f}" for c, p in dets.top_classes(row, k=3)]
        lines.append(f"no object: {float(dets.no_object[row]):.3f}")
        lines.append(f"box {x0:.0f}, {y0:.0f} – {x1:.0f}, {y1:.0f}")
        return "<br>".join(lines)
