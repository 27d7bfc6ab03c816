"""The image view under the canvas: one image and the pictures drawn over it (the mask layer, the highlight of
the selected segments, the attention heatmap), with zoom. `Canvas` adds the boxes, polygons and tools.

Scene coordinates are image pixels. The pictures are plain pixmap items that never take the mouse; the mask
layer and the highlight share one opacity, and all follow the zoom: crisp pixels when zoomed in, smooth when
zoomed out.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPixmap, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from .box_items import ANNOTATIONS, ATTENTION, LAYERS, MASKS

MIN_ZOOM, MAX_ZOOM = 0.02, 64.0


class ImageView(QGraphicsView):
    """See the module docstring. ``visible_layers`` says which layers are shown (`box_items.LAYERS`)."""

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        # no antialiasing: boxes are axis-aligned, and antialiased translucent fills cost 3x with 1,000 boxes
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setBackgroundBrush(QBrush(QColor(48, 48, 52)))

        self.image_id: int | None = None
        self.image_size: tuple[int, int] = (0, 0)  # width, height
        self.visible_layers = dict.fromkeys(LAYERS, True)
        self.mask_opacity = 0.45
        self.has_pixmap = False
        self.notice: str | None = None
        self._pixmap_item = QGraphicsPixmapItem()
        self._mask_item = QGraphicsPixmapItem()
        self._highlight_item = QGraphicsPixmapItem()
        self._attention_item = QGraphicsPixmapItem()
        items = (self._pixmap_item, self._mask_item, self._highlight_item, self._attention_item)
        for z, item in enumerate(items):
            item.setZValue(z)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.scene().addItem(item)
        self._mask_item.setOpacity(self.mask_opacity)
        self._highlight_item.setOpacity(0.8)
        self._attention_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)

    # ---- the image and its pictures ----------------------------------------------------------------------

    def show_blank(self, image_id: int | None, width: int, height: int) -> None:
        """Start showing an image of this size (its pixels come later with `set_pixmap`; 0 x 0: a size that is
        not known)."""
        self.image_id = image_id
        self.image_size = (width, height)
        self.has_pixmap = False
        self.set_notice(None)
        self._pixmap_item.setPixmap(QPixmap())
        if width > 0 and height > 0:
            blank = QPixmap(width, height)
            blank.fill(QColor(30, 30, 34))
            self._pixmap_item.setPixmap(blank)
        self.set_mask_overlay(None)
        self.set_highlight(None)
        self.set_attention(None)
        self.scene().setSceneRect(QRectF(0, 0, max(width, 1), max(height, 1)))

    def set_notice(self, text: str | None) -> None:
        """A message drawn over the middle of the view (an image that cannot be shown); None removes it."""
        self.notice = text
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawForeground(painter, rect)
        if not self.notice:
            return
        painter.save()
        painter.resetTransform()  # viewport pixels
        area = QRectF(self.viewport().rect()).adjusted(24, 24, -24, -24)
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.notice)
        painter.restore()

    def set_pixmap(self, image_id: int, image: QImage) -> None:
        if image_id != self.image_id:
            return
        self._pixmap_item.setPixmap(QPixmap.fromImage(image))
        self.has_pixmap = True
        self._update_pixmap_mode()

    def image_bounds(self) -> QRectF:
        return QRectF(0, 0, self.image_size[0], self.image_size[1])

    def clamped(self, pos: QPointF) -> QPointF:
        """``pos`` moved inside the image."""
        b = self.image_bounds()
        return QPointF(min(max(pos.x(), b.left()), b.right()), min(max(pos.y(), b.top()), b.bottom()))

    def set_mask_overlay(self, image: QImage | None) -> None:
        self._mask_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        self._mask_item.setVisible(image is not None and self.visible_layers[MASKS])

    def set_highlight(self, image: QImage | None) -> None:
        """The picture of the selected segments' pixels (None: nothing selected)."""
        self._highlight_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        self._highlight_item.setVisible(image is not None and self.visible_layers[ANNOTATIONS])

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = min(max(opacity, 0.0), 1.0)
        self._mask_item.setOpacity(self.mask_opacity)

    def set_attention(self, image: QImage | None, cell: tuple[float, float] = (1.0, 1.0)) -> None:
        """An attention map of feature cells; ``cell`` is the (x, y) image pixels one cell covers."""
        if image is None:
            self._attention_item.setPixmap(QPixmap())
            self._attention_item.setVisible(False)
            return
        self._attention_item.setPixmap(QPixmap.fromImage(image))
        self._attention_item.setTransform(QTransform.fromScale(cell[0], cell[1]))
        self._attention_item.setVisible(self.visible_layers[ATTENTION])

    @property
    def has_attention(self) -> bool:
        return not self._attention_item.pixmap().isNull()

    @property
    def has_mask_overlay(self) -> bool:
        return not self._mask_item.pixmap().isNull()

    @property
    def has_highlight(self) -> bool:
        return not self._highlight_item.pixmap().isNull()

    def set_picture_visible(self, layer: str, visible: bool) -> None:
        """Show or hide the pictures of ``layer`` (the highlight goes with the annotations)."""
        self.visible_layers[layer] = visible
        if layer == MASKS:
            self._mask_item.setVisible(visible and self.has_mask_overlay)
        elif layer == ATTENTION:
            self._attention_item.setVisible(visible and self.has_attention)
        elif layer == ANNOTATIONS:
            self._highlight_item.setVisible(visible and self.has_highlight)

    # ---- zoom --------------------------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        factor = min(max(factor, MIN_ZOOM), MAX_ZOOM)
        self.setTransform(QTransform.fromScale(factor, factor))
        self._zoomed()

    def zoom_by(self, step: float) -> None:
        target = min(max(self.zoom * step, MIN_ZOOM), MAX_ZOOM)
        ratio = target / self.zoom
        self.scale(ratio, ratio)
        self._zoomed()

    def fit(self) -> None:
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoomed()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def view_tolerance(self, pixels: float = 6.0) -> float:
        """``pixels`` screen pixels in image pixels at the current zoom."""
        return pixels / max(self.zoom, 1e-6)

    def _zoomed(self) -> None:
        self._update_pixmap_mode()
        self.zoom_changed.emit(self.zoom)

    def _update_pixmap_mode(self) -> None:
        mode = Qt.TransformationMode.FastTransformation  # crisp pixels when zoomed in
        if self.zoom < 1.0:
            mode = Qt.TransformationMode.SmoothTransformation
        for item in (self._pixmap_item, self._mask_item, self._highlight_item):
            item.setTransformationMode(mode)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()
