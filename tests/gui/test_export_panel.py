"""The Export dock: the window's model exported to ONNX in the background, with the parity report and the
latency of the exported file shown; an ONNX model or no model is refused with a message."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from detr_studio.app.export_panel import EXPORTS_FOLDER
from detr_studio.infer.onnx_metadata import read_metadata

from .helpers import SHOTS, load_tiny_model, open_and_wait


def shown(panel) -> dict[str, str]:
    """The figures of the summary, checked to be on screen."""
    text = panel.summary.text()
    assert all(html.escape(value) in text for _, value in panel.rows)
    return dict(panel.rows)


def test_export_from_the_panel_shows_the_parity_report_and_latency(qtbot, window, dataset, tiny_checkpoint):
    panel = window.export_dock.panel
    assert not panel.export_button.isEnabled() and "No model" in panel.model_label.text()
    open_and_wait(qtbot, window, window.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.export_dock.show()
    window.export_dock.raise_()
    suggested = Path(panel.path_edit.text())
    assert suggested.parent == dataset.instances_json("train").parent.resolve() / EXPORTS_FOLDER
    assert suggested.name.endswith("tiny.onnx") and panel.export_button.isEnabled()
    panel.fp16_box.setChecked(True)
    assert panel.path_edit.text().endswith("tiny-fp16.onnx")
    panel.fp16_box.setChecked(False)
    assert not panel.panoptic_box.isEnabled()  # the tiny model has no mask head
    target = dataset.root / "exported" / "tiny.onnx"
    panel.path_edit.setText(str(target))
    panel.path_edit.setModified(True)

    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert panel.busy.isVisible() and not panel.export_button.isEnabled()
    qtbot.waitUntil(lambda: panel.result is not None or panel.error is not None, timeout=120_000)
    assert panel.error is None, panel.error
    assert target.is_file() and read_metadata(target).class_names[1] == "circle"
    rows = shown(panel)
    assert rows["Parity"] == "passed"
    assert float(rows["pred_logits max |diff|"].split()[0]) <= 1e-4
    assert float(rows["pred_boxes max |diff|"].split()[0]) <= 1e-4
    assert "pred_masks max |diff|" not in rows
    for parity in panel.result.report.parity:  # random inputs, and the image on screen
        most = max(parity.torch_detections, parity.onnx_detections)
        agreement = rows[f"Detections agree ({parity.label})"]
        if most:
            assert (
                agreement
                == f"{100 * parity.detection_agreement:.1f}% ({parity.matched_detections} of {most})"
            )
        else:
            assert agreement.startswith("— (no confident detections")
        assert rows[f"Top class agrees ({parity.label})"] == f"{100 * parity.top_class_agreement:.1f}%"
    assert [p.label for p in panel.result.report.parity] == ["synthetic", "real"]
    assert rows["CPU latency"].endswith("input)") and "ms per image" in rows["CPU latency"]
    assert "CUDA latency" in rows  # measured on a GPU machine, else the reason it was not
    assert "ONNX parity PASSED" in panel.details.toPlainText()
    assert not panel.busy.isVisible() and panel.export_button.isEnabled()
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.resizeDocks([window.export_dock], [380], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    panel.grab().save(str(SHOTS / "export-panel.png"))

    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        window.load_model(target, device="cpu")
    assert "already an ONNX file" in panel.model_label.text() and not panel.export_button.isEnabled()
    assert not panel.export()
    assert "Load a PyTorch checkpoint" in window.errors[-1]


def test_a_file_name_without_onnx_is_refused(qtbot, window, tiny_checkpoint):
    load_tiny_model(qtbot, window, tiny_checkpoint)
    panel = window.export_dock.panel
    panel.path_edit.setText("/tmp/model.bin")
    assert not panel.export() and "must end in .onnx" in window.errors[-1]
