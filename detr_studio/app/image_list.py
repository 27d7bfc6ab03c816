"""The image list: a virtual list model over the document's images, thumbnails made lazily off the Qt
thread, and the filter bar above it.

`ImageListModel` holds only image ids (no widget per row), so 100,000 images cost one list of ints. A row's
thumbnail is asked for the first time the view paints that row; `ThumbnailLoader` decodes it on a background
`Lane` of two threads (newest request first, so a fast scroll does not wait for rows scrolled past) and keeps an LRU
cache of small QImages.

A folder project knows no image sizes at first (reading 100,000 headers takes 15 s or more). Sizes arrive from
three places, all handed to ``CocoDocument.set_image_sizes`` on the Qt thread: a thumbnail's decode, the
`SizeScanner` that reads the remaining headers on one background thread in small paced chunks (started a
moment after the list first shows, so the first paint never waits for it), and, for the image shown, the
window asking ``doc.image_size``. Saving reads whatever is still missing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QVBoxLayout,
    QWidget,
)

from detr_studio.common.text import plural
from detr_studio.data.coco import CocoDocument, ImageInfo
from detr_studio.data.images import ImageReadError, image_size, load_image
from detr_studio.session import Session
from detr_studio.session.filters import ImageFilter, matching_image_ids

from .background import Job, Lane
from .overlays import to_qimage
from .wheel_guard import guard_wheel

THUMB_SIZE = 48
UNREADABLE_TEXT = "⚠ cannot be read"
UNREADABLE_RGB = (198, 40, 40)
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
ModelIndex = QModelIndex | QPersistentModelIndex
SCAN_DELAY_MS = 800  # the size scan starts this long after a document is shown
SCAN_CHUNK = 64  # headers read between two pauses of the size scan
SCAN_DUTY = 0.5  # at most this share of the time the scan thread works (the rest leaves the GIL to Qt)


def make_thumbnail(path: Path, size: int) -> tuple[QImage, tuple[int, int]]:
    """Decode ``path`` and shrink it to fit ``size`` pixels (runs on a pool thread); with the full size.

    The thumbnail is centred on a transparent ``size`` x ``size`` square, so that every row's text starts
    at the same place whatever the image's shape.
    """
    import numpy as np

    img = load_image(path)
    full = img.size  # after EXIF orientation, like CocoDocument's sizes
    img.thumbnail((size, size))
    rgb = np.asarray(img)
    h, w = rgb.shape[:2]
    square = np.zeros((size, size, 4), dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    square[top : top + h, left : left + w, :3] = rgb
    square[top : top + h, left : left + w, 3] = 255
    return to_qimage(square), full


class ThumbnailLoader(QObject):
    """Thumbnails by image id: ``get`` answers from the cache or starts a load; ``ready(id)`` says one came,
    ``sized(id, width, height)`` gives the full size of the image it was made from, ``failed(id, message)``
    says why an image could not be read."""

    ready = Signal(int)
    sized = Signal(int, int, int)
    failed = Signal(int, str)

    def __init__(self, capacity: int = 2000, size: int = THUMB_SIZE, parent: QObject | None = None):
        super().__init__(parent)
        self.capacity = capacity
        self.size = size
        self._cache: OrderedDict[int, QImage] = OrderedDict()
        self._waiting: set[int] = set()
        self._failed: set[int] = set()
        self._generation = 0  # bumped by clear(): results of older jobs are dropped
        self._lane = Lane("thumbnails", threads=2, newest_first=True, parent=self)

    def get(self, image_id: int, path: Path) -> QImage | None:
        image = self._cache.get(image_id)
        if image is not None:
            self._cache.move_to_end(image_id)
            return image
        if image_id not in self._waiting and image_id not in self._failed:
            self._waiting.add(image_id)
            generation = self._generation
            self._lane.submit(
                make_thumbnail, path, self.size,
                done=lambda result: self._store(generation, image_id, *result),
                failed=lambda exc: self._on_failed(generation, image_id, exc),
            )  # fmt: skip
        return None

    def clear(self) -> None:
        self._generation += 1
        self._lane.clear()
        self._cache.clear()
        self._waiting.clear()
        self._failed.clear()

    def wait(self, msecs: int = 5000) -> bool:
        return self._lane.wait(msecs / 1000)

    def shutdown(self) -> None:
        self._lane.shutdown()

    def _store(self, generation: int, image_id: int, image: QImage, full: tuple[int, int]) -> None:
        if generation != self._generation:
            return  # asked for before a clear (another document)
        self._waiting.discard(image_id)
        self._cache[image_id] = image
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.sized.emit(image_id, *full)
        self.ready.emit(image_id)

    def _on_failed(self, generation: int, image_id: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._waiting.discard(image_id)
        self._failed.add(image_id)
        self.failed.emit(image_id, str(exc) if isinstance(exc, ImageReadError) else f"{exc!r}")


def read_sizes(job: Job, root: Path | None, items: list[tuple[int, str]]) -> None:
    """The size scan (on its lane): reads the headers of ``items`` ((image id, file name under ``root``))
    in chunks of `SCAN_CHUNK`, reports each chunk as ({image id: (width, height)}, {image id: why it cannot
    be read}) and pauses so that it works at most `SCAN_DUTY` of the time, leaving the GIL to the Qt thread."""
    base = root or Path(".")
    for start in range(0, len(items), SCAN_CHUNK):
        began = time.monotonic()
        sizes: dict[int, tuple[int, int]] = {}
        problems: dict[int, str] = {}
        for iid, name in items[start : start + SCAN_CHUNK]:
            if job.cancelled:
                return
            try:
                sizes[iid] = image_size(base / name)
            except ImageReadError as exc:
                problems[iid] = str(exc)  # marked in the list; saving names the file too
        if sizes or problems:
            job.report((sizes, problems))
        time.sleep((time.monotonic() - began) * (1.0 - SCAN_DUTY) / SCAN_DUTY)


class SizeScanner(QObject):
    """Reads the image headers a document lacks in the background and hands the sizes back in chunks
    (``found(token, sizes)`` on the Qt thread; ``token`` tells the receiver which scan they belong to), and
    the images whose header cannot be read (``unreadable(token, {image id: message})``)."""

    found = Signal(object, object)  # the token given to start, {image id: (width, height)}
    unreadable = Signal(object, object)  # the token given to start, {image id: message}

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._lane = Lane("sizes", parent=self)
        self._job: Job | None = None

    @property
    def running(self) -> bool:
        return self._lane.busy

    def start(self, token: object, root: Path | None, items: list[tuple[int, str]]) -> None:
        """Read the sizes of ``items`` ((image id, file name under ``root``)), after stopping any scan."""
        self.stop()
        self._job = self._lane.submit(
            read_sizes, root, items, context=True, progress=lambda chunk: self._report(token, *chunk)
        )

    def _report(self, token: object, sizes: dict, problems: dict) -> None:
        if sizes:
            self.found.emit(token, sizes)
        if problems:
            self.unreadable.emit(token, problems)

    def stop(self, wait_s: float = 0.0) -> None:
        if self._job is not None:
            self._job.cancel()
        if wait_s > 0:
            self._lane.wait(wait_s)

    def shutdown(self) -> None:
        self.stop()
        self._lane.shutdown()


class ImageListModel(QAbstractListModel):
    """One row per shown image id; text, thumbnail and tooltip are computed when the view asks."""

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session  # its prediction store, threshold and model class names
        self.doc: CocoDocument | None = None
        self.filter = ImageFilter()
        self.total = 0  # images in the document, shown or not
        self._ids: list[int] = []
        self._rows: dict[int, int] = {}
        self.thumbnails = ThumbnailLoader(parent=self)
        self.thumbnails.ready.connect(self._thumbnail_ready)
        self.thumbnails.sized.connect(lambda iid, w, h: self._take_sizes(self.doc, {iid: (w, h)}))
        self.thumbnails.failed.connect(self.mark_unreadable)
        self.sizes = SizeScanner(self)
        self.sizes.found.connect(self._take_sizes)
        self.sizes.unreadable.connect(self._take_problems)
        self.problems: dict[int, str] = {}  # images that cannot be read: why
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(SCAN_DELAY_MS)
        self._scan_timer.timeout.connect(self._start_size_scan)
        placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        placeholder.fill(QColor(128, 128, 128, 60))
        self._placeholder = placeholder

    # ---- contents ----------------------------------------------------------------------------------------

    def set_document(self, doc: CocoDocument | None, images: list[ImageInfo] | None = None) -> None:
        """Show ``doc``; ``images`` is ``doc.images`` when the caller has it (100,000 records take a while)."""
        self.beginResetModel()
        self.doc = doc
        self.total = len(images) if images is not None else len(doc.image_ids) if doc is not None else 0
        self.problems = {}
        self.thumbnails.clear()
        self.sizes.stop()
        self._recompute(images)
        self.endResetModel()
        if doc is not None:
            self._scan_timer.start()  # reads the sizes that are missing, if any

    def set_filter(self, flt: ImageFilter) -> None:
        self.beginResetModel()
        self.filter = flt
        self._recompute()
        self.endResetModel()

    def refresh(self, image_ids: list[int] | None = None) -> None:
        """Redraw the text of some rows (all when ``image_ids`` is None)."""
        if not self._ids:
            return
        if image_ids is None:
            self.dataChanged.emit(self.index(0), self.index(len(self._ids) - 1))
            return
        for iid in image_ids:
            row = self._rows.get(iid)
            if row is not None:
                self.dataChanged.emit(self.index(row), self.index(row))

    def _recompute(self, images: list[ImageInfo] | None = None) -> None:
        if self.doc is None:
            self._ids = []
        elif self.filter.is_empty:
            self._ids = [img.id for img in images] if images is not None else self.doc.image_ids
        else:
            session = self.session
            self._ids = matching_image_ids(
                self.doc, session.store, self.filter, session.threshold, session.class_names, images
            )
        self._rows = {iid: row for row, iid in enumerate(self._ids)}

    def mark_unreadable(self, image_id: int, message: str) -> None:
        """Mark the row of an image that cannot be read (its text, colour and tooltip say so)."""
        if self.doc is None or self.problems.get(image_id) == message:
            return
        self.problems[image_id] = message
        self.refresh([image_id])

    def forget_problems(self) -> None:
        """The images are looked for again (a new image folder): no row is marked until it fails again."""
        self.problems = {}
        self.thumbnails.clear()
        self.refresh()

    def image_id_at(self, row: int) -> int | None:
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def row_of(self, image_id: int) -> int:
        return self._rows.get(image_id, -1)

    @property
    def image_ids(self) -> list[int]:
        return list(self._ids)

    # ---- Qt model ----------------------------------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._ids)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.doc is None or not 0 <= index.row() < len(self._ids):
            return None
        iid = self._ids[index.row()]
        if role == IMAGE_ID_ROLE:
            return iid
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(iid)
        if role == Qt.ItemDataRole.DecorationRole:
            image = self.thumbnails.get(iid, self.doc.image_path(iid))
            return image if image is not None else self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            problem = self.problems.get(iid)
            if problem is not None:
                return f"{problem}\nimage id {iid}"
            info = self.doc.image(iid)
            size = f"{info.width} × {info.height} px" if info.width else "size not read yet"
            return f"{self.doc.image_path(iid)}\n{size}, image id {iid}"
        if role == Qt.ItemDataRole.ForegroundRole and iid in self.problems:
            return QColor(*UNREADABLE_RGB)
        return None

    def _text(self, iid: int) -> str:
        doc = self.doc
        assert doc is not None
        info = doc.image(iid)
        count = len(doc.segments_for(iid)) if doc.is_panoptic else len(doc.annotations_for(iid))
        parts = [plural(count, "label")]
        store = self.session.store
        if iid in store:
            visible = store.visible(iid, self.session.threshold)
            parts.append(f"{0 if visible is None else len(visible)} predicted")
        if info.reviewed:
            parts.append("✓ reviewed")
        if iid in self.problems:
            parts.insert(0, UNREADABLE_TEXT)
        return f"{Path(info.file_name).name}\n{' · '.join(parts)}"

    def _start_size_scan(self) -> None:
        doc = self.doc
        if doc is not None:
            missing = doc.missing_sizes()
            if missing:
                self.sizes.start(doc, doc.image_root, missing)

    def _take_sizes(self, token: object, sizes: dict[int, tuple[int, int]]) -> None:
        if token is self.doc and self.doc is not None:
            self.doc.set_image_sizes(sizes)

    def _take_problems(self, token: object, problems: dict[int, str]) -> None:
        if token is self.doc:
            for iid, message in problems.items():
                self.mark_unreadable(iid, message)

    def stop_background_work(self, wait_s: float = 2.0) -> None:
        """Stop making thumbnails and reading sizes (the window is closing)."""
        self._scan_timer.stop()
        self.sizes.stop(wait_s)
        self.sizes.shutdown()
        self.thumbnails.clear()
        self.thumbnails.wait(round(wait_s * 1000))
        self.thumbnails.shutdown()

    def _thumbnail_ready(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class ImageListPanel(QWidget):
    """Filter bar plus the list view; ``image_chosen(id)`` when the user picks a row."""

    image_chosen = Signal(int)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = ImageListModel(session, self)
        self.view = QListView(self)
        self.view.setModel(self.model)
        self.view.setUniformItemSizes(True)  # constant row height: no per-row size queries
        self.view.setLayoutMode(QListView.LayoutMode.Batched)  # lay out 100,000 rows in steps, not at once
        self.view.setBatchSize(2000)
        self.view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.view.selectionModel().currentChanged.connect(self._current_changed)

        self.name_edit = QLineEdit(self)
        self.name_edit.setPlaceholderText("Filter by name…")
        self.name_edit.setClearButtonEnabled(True)
        self.unreviewed_box = QCheckBox("Unreviewed", self)
        self.predicted_box = QCheckBox("Has predictions", self)
        self.class_combo = QComboBox(self)
        self.min_score = QDoubleSpinBox(self)
        self.max_score = QDoubleSpinBox(self)
        for spin, value in ((self.min_score, 0.0), (self.max_score, 1.0)):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
            spin.setValue(value)
        self.count_label = QLabel(self)
        guard_wheel(self, (self.class_combo, self.min_score, self.max_score))

        checks = QHBoxLayout()
        checks.addWidget(self.unreviewed_box)
        checks.addWidget(self.predicted_box)
        scores = QHBoxLayout()
        scores.addWidget(QLabel("Score", self))
        scores.addWidget(self.min_score)
        scores.addWidget(QLabel("to", self))
        scores.addWidget(self.max_score)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.name_edit)
        layout.addLayout(checks)
        layout.addWidget(self.class_combo)
        layout.addLayout(scores)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)

        self.name_edit.textChanged.connect(self._apply_filter)
        self.unreviewed_box.toggled.connect(self._apply_filter)
        self.predicted_box.toggled.connect(self._apply_filter)
        self.class_combo.currentIndexChanged.connect(self._apply_filter)
        self.min_score.valueChanged.connect(self._apply_filter)
        self.max_score.valueChanged.connect(self._apply_filter)
        self.model.modelReset.connect(self._update_count)

    def set_document(self, doc: CocoDocument | None, images: list[ImageInfo] | None = None) -> None:
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("Any class", None)
        if doc is not None:
            for cat in doc.categories:
                self.class_combo.addItem(cat.name, cat.id)
        self.class_combo.blockSignals(False)
        self.model.set_document(doc, images)

    def set_classes(self, classes: Sequence[tuple[int, str]]) -> None:
        """Refill the class filter with (id, name) pairs, keeping the chosen class when it still exists."""
        current = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("Any class", None)
        for cid, name in classes:
            self.class_combo.addItem(name, cid)
        index = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(index, 0))
        self.class_combo.blockSignals(False)
        if index < 0 and current is not None:
            self._apply_filter()  # the class filtered on is gone (merged or removed)

    def current_filter(self) -> ImageFilter:
        return ImageFilter(
            name=self.name_edit.text(),
            unreviewed=self.unreviewed_box.isChecked(),
            has_predictions=self.predicted_box.isChecked(),
            category_id=self.class_combo.currentData(),
            min_score=self.min_score.value(),
            max_score=self.max_score.value(),
        )

    def select_image(self, image_id: int) -> bool:
        """Make ``image_id`` the current row (False when the filter hides it)."""
        row = self.model.row_of(image_id)
        if row < 0:
            return False
        index = self.model.index(row)
        if self.view.currentIndex() != index:
            self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        return True

    def current_image_id(self) -> int | None:
        index = self.view.currentIndex()
        return self.model.image_id_at(index.row()) if index.isValid() else None

    def refilter(self) -> None:
        """Recompute the rows when what the filter reads (predictions, threshold, reviews) changed."""
        if self.model.filter.is_empty:
            self.model.refresh()
        else:
            self._apply_filter()

    def _apply_filter(self) -> None:
        current = self.current_image_id()
        self.model.set_filter(self.current_filter())
        if current is not None:
            selection = self.view.selectionModel()
            selection.blockSignals(True)  # the same image stays shown: no new image_chosen
            self.select_image(current)
            selection.blockSignals(False)

    def _update_count(self) -> None:
        total = self.model.total
        shown = self.model.rowCount()
        self.count_label.setText(
            f"{shown:,} of {plural(total, 'image')}" if shown != total else plural(total, "image")
        )

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        iid = self.model.image_id_at(current.row()) if current.isValid() else None
        if iid is not None:
            self.image_chosen.emit(iid)
