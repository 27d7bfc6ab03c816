"""The model and its predictions in the window: choosing and loading a model, predicting the image shown
or all of them, the threshold and the ghosts, and accepting or rejecting what the model found.

A model is asked for through the session (``session.choose_model``: the Model dialog, the Training dock's
"Use this model", the demo); this controller hands it to the inference worker and reports the outcome.
Results go into the session, which tells the views.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction

from detr_studio.common.text import plural
from detr_studio.infer.detections import Detections
from detr_studio.session import Session
from detr_studio.session.inference import BatchSummary
from detr_studio.session.model_loading import ModelChoice, ModelInfo

from . import demo_project
from .model_dialog import ModelDialog
from .services import Services
from .views import Controller, Views

NO_MODEL = "No model is loaded: choose one first (Model > Choose Model)"


class PredictionController(Controller):
    """See the module docstring. ``predictions_changed(image_id)`` fires when new predictions for an image
    arrive (-1: a batch run ended). ``predict_all_action`` is disabled while a batch runs."""

    predictions_changed = Signal(int)

    def __init__(self, session: Session, services: Services, views: Views, parent: QObject | None = None):
        super().__init__(session, services, views, parent)
        self.worker = worker = services.worker
        self.review_panel = views.review_panel
        self.image_panel = views.image_panel
        self.status = status = views.status
        self.dialog_parent = views.window
        self.predict_on_navigate = False
        self.predict_all_action: QAction | None = None
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_failed.connect(self._on_model_failed)
        worker.predicted.connect(self._on_predicted)
        worker.predict_failed.connect(
            lambda _iid, message: services.report_problem(f"Prediction failed: {message}")
        )
        worker.batch_progress.connect(status.batch_progress)
        worker.batch_results.connect(self._on_batch_results)
        worker.batch_finished.connect(self._on_batch_finished)
        session.events.model_choice.connect(self._load)
        session.events.image.connect(self._on_image)
        session.events.threshold.connect(self._on_threshold)
        panel = self.review_panel
        panel.threshold_slider.valueChanged.connect(lambda v: self.set_threshold(v / 100.0))
        panel.ghosts_box.toggled.connect(session.set_ghosts)
        session.events.ghosts.connect(panel.ghosts_box.setChecked)

    # ---- the model ---------------------------------------------------------------------------------------

    def choose_model(self) -> None:
        dialog = ModelDialog(self.dialog_parent, self.session.model_choice)
        if dialog.exec() != ModelDialog.DialogCode.Accepted:
            return
        choice = dialog.choice()
        if choice is None:
            self.services.report_error("Choose a zoo model or a checkpoint file")
            return
        self.session.choose_model(choice)

    def _load(self, choice: ModelChoice | None) -> None:
        if choice is None:
            return
        self.status.model_status.setText(f"loading {choice.name}…")
        self.review_panel.model_label.setText(f"Loading {choice.name}…")
        self.worker.load(choice)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.status.model_status.setText(f"model: {info.name}")
        self.status.device_label.setText(info.description)
        note = demo_project.shapes_only_note(info.class_names)
        self.review_panel.model_label.setText(
            f"<b>{info.name}</b><br>{plural(info.num_queries, 'query', 'queries')}, "
            f"{plural(len(info.class_names), 'class', 'classes')}"
            + (", mask head" if info.supports_masks else "")
            + ("" if info.has_attention else "<br>(ONNX: no attention maps)")
            + (f"<br><i>Demo model: {note}</i>" if note else "")
        )
        self.review_panel.set_heads(info.num_heads)
        self.session.set_model(info)
        self.image_panel.refilter()

    def _on_model_failed(self, message: str) -> None:
        self.status.model_status.setText("no model")
        self.review_panel.model_label.setText("No model loaded")
        self.services.report_error(f"Cannot load the model: {message}")

    def _has_model(self) -> bool:
        if self.session.model_info is None and self.session.model_choice is None:
            self.services.report_error(NO_MODEL)
            return False
        return True

    # ---- predicting --------------------------------------------------------------------------------------

    def predict_current(self) -> None:
        doc, iid = self.session.doc, self.session.current_image_id
        if doc is None or iid is None or not self._has_model():
            return
        self.services.status("Predicting…")
        self.worker.predict(iid, doc.image_path(iid))

    def predict_all(self, batch_size: int = 2) -> None:
        """Predict every image of the project in the background (the window stays usable)."""
        doc = self.session.doc
        if doc is None or not self._has_model():
            return
        items = [(img.id, doc.image_path(img.id)) for img in doc.images]
        self.status.start_batch(len(items))
        if self.predict_all_action is not None:
            self.predict_all_action.setEnabled(False)
        self.worker.predict_all(items, batch_size)

    def cancel_batch(self) -> None:
        self.worker.cancel_batch()

    def set_predict_on_navigate(self, on: bool) -> None:
        """Predict each image when it is shown (and has no predictions yet)."""
        self.predict_on_navigate = on

    def _on_image(self, image_id: int | None) -> None:
        if (
            self.predict_on_navigate
            and image_id is not None
            and self.session.model_info is not None
            and image_id not in self.session.store
        ):
            self.predict_current()

    def _on_predicted(self, image_id: int, dets: Detections, model: str) -> None:
        if not self.session.put_predictions({image_id: dets}, model):
            return
        threshold = self.session.threshold
        self.services.status(
            f"{plural(len(dets.above(threshold)), 'detection')} above {threshold:.2f}", 5_000
        )
        self.image_panel.model.refresh([image_id])
        self.predictions_changed.emit(image_id)

    def _on_batch_results(self, results: dict, model: str) -> None:
        self.session.put_predictions(results, model)
        self.image_panel.model.refresh()  # rows are re-filtered once, when the batch ends

    def _on_batch_finished(self, summary: BatchSummary) -> None:
        self.status.end_batch()
        if self.predict_all_action is not None:
            self.predict_all_action.setEnabled(self.session.doc is not None)
        if summary.failure:
            self.services.report_error(f"Batch prediction stopped: {summary.failure}")
        elif summary.errors:
            shown = "\n".join(summary.errors[:5])
            more = f"\n… and {len(summary.errors) - 5} more" if len(summary.errors) > 5 else ""
            self.services.report_error(
                f"{plural(len(summary.errors), 'image')} could not be predicted:\n{shown}{more}"
            )
        self.image_panel.refilter()
        state = "cancelled" if summary.cancelled else "done"
        self.services.status(
            f"Predict all {state}: {summary.done} of {plural(summary.total, 'image')}", 10_000
        )
        self.predictions_changed.emit(-1)

    # ---- reviewing ---------------------------------------------------------------------------------------

    def set_threshold(self, threshold: float) -> None:
        """Re-filter the cached predictions (no model run)."""
        self.session.set_threshold(threshold)

    def _on_threshold(self, threshold: float) -> None:
        slider = self.review_panel.threshold_slider
        if slider.value() != round(threshold * 100):
            slider.blockSignals(True)
            slider.setValue(round(threshold * 100))
            slider.blockSignals(False)
        self.review_panel.threshold_label.setText(f"{threshold:.2f}")
        self.image_panel.refilter()

    def accept_selected(self) -> None:
        """Turn the selected predictions (and ghosts) into annotations with the model's provenance."""
        self.session.accept(list(self.session.selection.query_ids))

    def accept_all(self) -> None:
        self.session.accept_all()

    def reject_selected(self) -> None:
        """Hide the selected predictions; undoable, like every edit."""
        self.session.reject(list(self.session.selection.query_ids))
