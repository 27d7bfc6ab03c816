"""The Qt-free session: one undo history for document edits and prediction marks (transactions, rollback,
nudge merging, the saved state), and the session's state and events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detr_studio.data.coco import (
    AddAnnotations,
    CocoDocument,
    CocoEditError,
    RemoveAnnotations,
    UpdateAnnotation,
)
from detr_studio.infer.detections import Detections
from detr_studio.session import Session
from detr_studio.session.editing import NUDGE, nudged
from detr_studio.session.events import Emitter
from detr_studio.session.history import DocumentChange, History
from detr_studio.session.predictions import ACCEPTED, REJECTED, MarkChange, PredictionStore
from detr_studio.session.project import COCO, Project


def make_doc() -> CocoDocument:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 60, "height": 50} for i in (1, 2)]
    doc = CocoDocument.new(["cat", "dog"], images)
    doc.dirty = False
    return doc


def boxes(doc: CocoDocument) -> dict[int, tuple]:
    return {a.id: a.bbox for a in doc.annotations}


def dets(scores, labels, source="1.jpg") -> Detections:
    q = len(scores)
    probs = np.full((q, 4), 0.01, dtype=np.float32)
    for row, (s, lab) in enumerate(zip(scores, labels)):
        probs[row, lab] = s
    return Detections(
        image_size=(50, 60),
        boxes=np.array([[10 + 5 * k, 10, 30 + 5 * k, 40] for k in range(q)], dtype=np.float32),
        scores=np.array(scores, dtype=np.float32),
        labels=np.array(labels, dtype=np.int64),
        probs=probs,
        query_ids=np.arange(q),
        source=source,
    )


def recorder(emitter: Emitter) -> list:
    seen: list = []
    emitter.connect(seen.append)
    return seen


# ---------------------------------------------------------------------------------------------- the emitter


def test_an_emitter_calls_its_callbacks_in_order_and_can_be_blocked():
    emitter: Emitter[int] = Emitter("n")
    calls = []
    first = emitter.connect(lambda v: calls.append(("a", v)))
    emitter.connect(lambda v: calls.append(("b", v)))
    emitter.emit(1)
    with emitter.blocked():
        emitter.emit(2)
    emitter.disconnect(first)
    emitter.emit(3)
    assert calls == [("a", 1), ("b", 1), ("b", 3)]


# ---------------------------------------------------------------------------------------------- history


def test_a_transaction_is_one_undo_step_of_document_edits_and_marks():
    doc, store = make_doc(), PredictionStore()
    store.put(1, dets([0.9, 0.8], [1, 2]), "m")
    history = History()
    record = doc.new_annotation(1, 1, [1, 1, 5, 5])
    with history.transaction("accept") as tx:
        tx.apply(DocumentChange(doc, AddAnnotations([record])))
        tx.apply(MarkChange.of(store, 1, "m", [0], ACCEPTED))
    assert tx.ok and len(history) == 1 and history.can_undo and not history.can_redo
    assert len(doc.annotations) == 1 and store.get(1).marks == {0: ACCEPTED}
    assert history.undo()
    assert doc.annotations == [] and store.get(1).marks == {}
    assert history.redo()
    assert len(doc.annotations) == 1 and store.get(1).marks == {0: ACCEPTED}


def test_a_refused_edit_takes_back_the_rest_of_its_transaction_and_says_why():
    doc, store = make_doc(), PredictionStore()
    store.put(1, dets([0.9], [1]), "m")
    history = History()
    failures = recorder(history.failed)
    with history.transaction("accept") as tx:
        tx.apply(MarkChange.of(store, 1, "m", [0], ACCEPTED))
        tx.apply(DocumentChange(doc, RemoveAnnotations([99])))  # no such annotation
    assert not tx.ok and len(history) == 0
    assert store.get(1).marks == {}  # the mark made before the refused edit is gone again
    assert failures and failures[0].startswith("accept: ")
    assert not history.record("delete", [DocumentChange(doc, RemoveAnnotations([99]))])


def test_an_error_that_is_not_a_refusal_still_takes_back_the_transaction_and_propagates():
    doc = make_doc()
    history = History()
    record = doc.new_annotation(1, 1, [1, 1, 5, 5])
    with pytest.raises(RuntimeError), history.transaction("draw") as tx:
        tx.apply(DocumentChange(doc, AddAnnotations([record])))
        raise RuntimeError("boom")
    assert doc.annotations == [] and len(history) == 0


def test_nested_transactions_join_the_outer_step():
    doc = make_doc()
    history = History()
    with history.transaction("two boxes") as outer:
        outer.apply(DocumentChange(doc, AddAnnotations([doc.new_annotation(1, 1, [1, 1, 5, 5])])))
        with history.transaction("inner") as inner:
            inner.apply(DocumentChange(doc, AddAnnotations([doc.new_annotation(1, 2, [9, 9, 5, 5])])))
    assert len(history) == 1 and len(doc.annotations) == 2
    history.undo()
    assert doc.annotations == []


def test_consecutive_nudges_of_the_same_boxes_merge_but_never_across_a_save():
    doc = make_doc()
    doc.add(1, 1, [10, 10, 5, 5])
    history = History()
    aid = doc.annotations[0].id
    for _ in range(3):
        history.record(
            "nudge", [DocumentChange(doc, nudged(doc, 1, [aid], 1.0, 0.0))], merge_key=(NUDGE, (aid,))
        )
    assert len(history) == 1 and doc.annotation(aid).bbox[0] == 13
    history.mark_saved()
    history.record("nudge", [DocumentChange(doc, nudged(doc, 1, [aid], 1.0, 0.0))], merge_key=(NUDGE, (aid,)))
    assert len(history) == 2  # merging into the saved step would lose the saved state
    history.record("move", [DocumentChange(doc, UpdateAnnotation(aid, {"bbox": [0, 0, 5, 5]}))])
    assert len(history) == 3
    history.undo()
    history.undo()
    assert doc.annotation(aid).bbox[0] == 13 and history.at_saved_state
    history.undo()
    assert doc.annotation(aid).bbox[0] == 10


def test_the_saved_state_is_known_from_the_history_and_marks_do_not_leave_it():
    doc, store = make_doc(), PredictionStore()
    store.put(1, dets([0.9], [1]), "m")
    history = History()
    assert history.at_saved_state
    history.record("draw", [DocumentChange(doc, AddAnnotations([doc.new_annotation(1, 1, [1, 1, 5, 5])]))])
    assert not history.at_saved_state
    history.undo()
    assert history.at_saved_state  # back where the file is, though the document was edited
    history.redo()
    history.mark_saved()
    history.record("reject", [MarkChange.of(store, 1, "m", [0], REJECTED)])
    assert history.at_saved_state  # a review mark is not in the file
    history.undo()
    history.undo()
    assert not history.at_saved_state
    history.record(
        "draw again", [DocumentChange(doc, AddAnnotations([doc.new_annotation(1, 2, [2, 2, 5, 5])]))]
    )
    assert not history.at_saved_state and not history.can_redo  # the saved state can never come back
    assert not History(saved=False).at_saved_state  # a document with recovered, unsaved edits


def test_undo_is_unlimited():
    doc = make_doc()
    history = History()
    for k in range(300):
        history.record(
            "draw", [DocumentChange(doc, AddAnnotations([doc.new_annotation(1, 1, [k % 40, 1, 5, 5])]))]
        )
    while history.undo():
        pass
    assert doc.annotations == [] and history.at_saved_state


def test_a_step_that_cannot_be_undone_leaves_everything_as_it_was():
    doc = make_doc()
    history = History()
    failures = recorder(history.failed)
    record = doc.new_annotation(1, 1, [1, 1, 5, 5])
    history.record("draw", [DocumentChange(doc, AddAnnotations([record]))])
    doc.apply(RemoveAnnotations([record["id"]]))  # changed behind the history's back
    assert not history.undo()
    assert len(history) == 1 and failures and "cannot undo draw" in failures[-1]


# ---------------------------------------------------------------------------------------------- the session


@pytest.fixture
def session() -> Session:
    session = Session()
    session.set_project(Project(make_doc(), COCO, Path("x.json"), None))
    session.show_image(1)
    session.model_info = None
    return session


def test_accepting_is_one_step_that_undo_and_redo_take_back_and_bring_again(session):
    edited = recorder(session.events.edited)
    path = str(session.doc.image_path(1))
    session.put_predictions({1: dets([0.9, 0.8, 0.2], [1, 2, 1], source=path)}, "tiny")
    assert [int(q) for q in session.visible_predictions().query_ids] == [0, 1]
    assert session.accept([0])
    ann = session.doc.annotations[-1]
    assert (ann.source, ann.model, ann.review) == ("model", "tiny", "accepted")
    assert [int(q) for q in session.visible_predictions().query_ids] == [1]
    assert session.undo()
    assert session.doc.annotations == [] and [int(q) for q in session.visible_predictions().query_ids] == [
        0,
        1,
    ]
    assert session.redo()
    assert len(session.doc.annotations) == 1 and [
        int(q) for q in session.visible_predictions().query_ids
    ] == [1]
    assert [e.kind for e in edited] == ["do", "undo", "redo"] and all(e.touches_document for e in edited)


def test_reject_is_an_undoable_mark_and_accept_all_takes_what_is_shown(session):
    path = str(session.doc.image_path(1))
    session.put_predictions({1: dets([0.9, 0.8, 0.2], [1, 2, 1], source=path)}, "tiny")
    assert session.reject([1])
    assert session.doc.annotations == [] and session.at_saved_state
    assert [int(q) for q in session.visible_predictions().query_ids] == [0]
    session.set_threshold(0.1)
    assert session.accept_all()
    assert len(session.doc.annotations) == 2  # queries 0 and 2; the rejected one stays out
    session.undo()
    session.undo()
    assert [int(q) for q in session.visible_predictions().query_ids] == [0, 1, 2]


def test_results_for_images_of_another_project_are_dropped(session):
    assert session.put_predictions({1: dets([0.9], [1], source="/elsewhere/1.jpg")}, "tiny") == []
    assert 1 not in session.store


def test_threshold_ghosts_and_selection_emit_only_on_change(session):
    thresholds, ghosts, selections = (recorder(session.events.threshold), recorder(session.events.ghosts),
                                      recorder(session.events.selection))  # fmt: skip
    session.set_threshold(0.7)
    session.set_threshold(0.7)
    session.set_threshold(3.0)
    session.set_ghosts(True)
    session.set_ghosts(True)
    session.select(annotation_ids=[4])
    session.select(annotation_ids=[4])
    session.show_image(2)
    assert thresholds == [0.7, 1.0] and ghosts == [True]
    assert [s.annotation_ids for s in selections] == [(4,)] and session.selection.is_empty


def test_a_new_model_drops_the_old_ones_predictions(session):
    path = str(session.doc.image_path(1))
    session.put_predictions({1: dets([0.9], [1], source=path)}, "tiny")
    changed = recorder(session.events.predictions)
    session.set_model(None)
    assert 1 not in session.store and changed == [None]


def test_a_project_with_recovered_edits_starts_away_from_its_saved_state():
    doc = make_doc()
    doc.add(1, 1, [1, 1, 5, 5])
    session = Session()
    session.set_project(Project(doc, COCO, Path("x.json"), None))
    assert not session.at_saved_state


def test_undo_back_to_the_saved_state_leaves_no_edits_to_recover(tmp_path):
    path = tmp_path / "labels.json"
    make_doc().save(path)
    doc = CocoDocument.load(path, tmp_path)
    session = Session()
    session.set_project(Project(doc, COCO, path, None))
    record = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
    assert session.apply(AddAnnotations([record]), "add 1 box")
    assert session.apply(UpdateAnnotation(7, {"bbox": [2, 2, 5, 5]}), "move 1 box")
    session.undo()
    session.undo()
    assert session.at_saved_state and not doc.dirty and not session.has_unsaved_changes
    session.redo()  # away from the saved state again: dirty and journaled as before
    assert doc.dirty and session.has_unsaved_changes
    session.undo()
    doc.close()
    again = CocoDocument.load(path, tmp_path)
    assert again.pending_journal == []  # the edits and their undos cancel out: nothing to offer
    again.close()


def test_a_refused_edit_is_reported_through_the_session(session):
    failures = recorder(session.events.failed)
    assert not session.apply(RemoveAnnotations([123]), "delete 1 box")
    assert failures and failures[0].startswith("delete 1 box: ")
    with pytest.raises(CocoEditError):
        session.doc.apply(RemoveAnnotations([123]))


def test_the_session_package_imports_neither_qt_nor_the_window():
    import ast

    import detr_studio.session as package

    folder = Path(package.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("PySide6", "detr_studio.app")), f"{path.name} imports {name}"
