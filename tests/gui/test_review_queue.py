"""The review queue dock: its rows take the user to the image and the box on the canvas."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import Qt

from detr_studio.app.canvas import ANNOTATIONS, PREDICTIONS
from detr_studio.infer.uncertainty import ENTROPY

from ..unit.test_review import dets
from .helpers import open_and_wait, shot


def test_rows_take_the_user_to_the_image_and_select_the_box(qtbot, window, dataset, shots):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.queue_dock.show()
    window.queue_dock.raise_()
    panel = window.queue_dock.panel
    doc = window.session.doc
    target = doc.images[-1]
    label = doc.annotations_for(target.id)[0]
    x, y, w, h = label.bbox
    c = len(doc.class_names)  # real classes 0..C-1, no-object last
    sure_label = np.zeros(c + 1)
    sure_label[label.category_id] = 0.95
    sure_label[-1] = 0.05
    doubtful = np.full(c + 1, 0.8 / c)
    doubtful[-1] = 0.2
    rows = [sure_label, sure_label, doubtful]
    boxes = [[0, 0, 3, 3], [x, y, x + w, y + h], [2, 2, 5, 5]]  # q0 an extra box, q1 on the label, q2 unsure
    source = str(doc.image_path(target.id))
    image_dets = replace(dets(rows, boxes, size=(target.height, target.width)), source=source)
    window.session.store.put(target.id, image_dets, "hand-made")
    window.predictions_changed.emit(target.id)
    qtbot.waitUntil(
        lambda: panel.mistakes_list.count() > 0 and panel.uncertain_list.count() > 0, timeout=5_000
    )

    texts = [panel.mistakes_list.item(i).text() for i in range(panel.mistakes_list.count())]
    assert any("extra box" in t for t in texts), texts
    extra_row = next(i for i, t in enumerate(texts) if "extra box" in t)
    window.navigation.select_image(doc.images[0].id)
    panel.tabs.setCurrentIndex(1)
    panel.mistakes_list.itemClicked.emit(panel.mistakes_list.item(extra_row))
    assert window.session.current_image_id == target.id
    assert window.canvas.selected_prediction_ids() == [0]

    panel.measure_combo.setCurrentIndex(panel.measure_combo.findData(ENTROPY))
    panel.refresh()
    top = panel.uncertain_list.item(0)
    assert top.data(Qt.ItemDataRole.UserRole) == (target.id, PREDICTIONS, 2)  # the unsure query
    panel.tabs.setCurrentIndex(0)
    panel.uncertain_list.itemClicked.emit(top)
    assert window.session.show_ghosts  # its score is below the threshold: shown faintly to be selected
    assert window.canvas.selected_prediction_ids() == [2]
    shot(window, shots, "review-queue")

    other = [a for a in doc.annotations_for(target.id) if a.id != label.id]
    if other:  # labels without a prediction are misses that select the annotation
        miss = next(i for i, t in enumerate(texts) if "miss" in t)
        panel.mistakes_list.itemClicked.emit(panel.mistakes_list.item(miss))
        assert window.canvas.selected_annotation_ids()[0] in {a.id for a in other}
    assert panel.mistakes_list.item(0).data(Qt.ItemDataRole.UserRole)[1] in (ANNOTATIONS, PREDICTIONS)

    # a rebuild (new predictions, an edit) keeps the row the user was on
    panel.mistakes_list.setCurrentRow(extra_row)
    chosen = panel.mistakes_list.currentItem().data(Qt.ItemDataRole.UserRole)
    window.predictions_changed.emit(target.id)
    panel.refresh()
    assert panel.mistakes_list.currentItem().data(Qt.ItemDataRole.UserRole) == chosen
    assert panel.mistakes_list.currentItem().isSelected()


def test_a_box_drawn_in_a_dataset_with_masks_is_listed_until_it_gets_a_mask(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.queue_dock.show()
    panel = window.queue_dock.panel
    new_id = window.editing.add_box(window.canvas.image_bounds().adjusted(4, 4, -30, -30))
    assert window.session.doc.annotation(new_id).box_mask
    panel.refresh()
    texts = [panel.mistakes_list.item(i).text() for i in range(panel.mistakes_list.count())]
    row = next(i for i, t in enumerate(texts) if "box as mask" in t)
    assert "1 box without a mask" in panel.summary_label.text()
    item = panel.mistakes_list.item(row)
    assert item.data(Qt.ItemDataRole.UserRole)[1:] == (ANNOTATIONS, new_id)
    panel.mistakes_list.itemClicked.emit(item)
    assert window.canvas.selected_annotation_ids() == [new_id]
