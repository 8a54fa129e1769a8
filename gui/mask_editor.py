"""The mask editor on the canvas: paint over a picture what to repaint (inpainting), or draw a scribble for a
control model.

- :class:`MaskLayer` is the painted layer at the picture's own size. Its alpha channel is the mask (255 =
  repaint); the colour only shows it. Strokes, the eraser, invert, clear and a bounded undo act on it.
- :class:`MaskCanvas` draws the picture with the layer over it and turns mouse strokes into brush dabs in the
  picture's pixels (so the brush size is the same whatever the zoom).
- :class:`MaskEditor` is the canvas with its tool row (brush, eraser, size, softness, invert, clear, undo, done).

GUI thread only.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QRadialGradient,
    QShortcut,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

#: Undo keeps this many strokes (each a copy of the layer: 4 bytes a pixel).
UNDO_DEPTH = 20
MASK_RED = QColor(255, 40, 40)
SCRIBBLE_WHITE = QColor(255, 255, 255)


class MaskLayer:
    """A painted layer of ``width`` × ``height`` pixels; its alpha is the mask."""

    def __init__(self, width: int, height: int, color: QColor = MASK_RED):
        self.color = QColor(color)
        self._image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
        self._image.fill(Qt.GlobalColor.transparent)
        self._undo: list[QImage] = []

    @property
    def size(self) -> tuple[int, int]:
        return self._image.width(), self._image.height()

    def image(self) -> QImage:
        return self._image

    # -- painting ---------------------------------------------------------------------------------------------
    def begin_stroke(self) -> None:
        """Remember the layer before a stroke (or any other change), for :meth:`undo`."""
        self._undo.append(self._image.copy())
        del self._undo[:-UNDO_DEPTH]

    def dab_line(self, a: QPointF, b: QPointF, radius: float, softness: float, erase: bool = False) -> None:
        """Round dabs from ``a`` to ``b`` (picture pixels), close enough together to make a smooth line. A soft
        brush (``softness`` 0..1) fades out over that fraction of its radius."""
        radius = max(0.5, radius)
        distance = math.hypot(b.x() - a.x(), b.y() - a.y())
        count = max(1, int(distance / max(0.5, radius * 0.25)) + 1)
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut if erase
                                   else QPainter.CompositionMode.CompositionMode_SourceOver)
        for i in range(count):
            t = i / max(1, count - 1) if count > 1 else 1.0
            centre = QPointF(a.x() + (b.x() - a.x()) * t, a.y() + (b.y() - a.y()) * t)
            gradient = QRadialGradient(centre, radius)
            solid = QColor(self.color)
            clear = QColor(self.color)
            clear.setAlpha(0)
            gradient.setColorAt(0.0, solid)
            gradient.setColorAt(max(0.0, min(1.0, 1.0 - softness)) if softness > 0 else 1.0, solid)
            gradient.setColorAt(1.0, clear if softness > 0 else solid)
            painter.setBrush(gradient)
            painter.drawEllipse(centre, radius, radius)
        painter.end()

    def invert(self) -> None:
        self.begin_stroke()
        self.set_array(255 - self.to_array(), remember=False)

    def clear(self) -> None:
        self.begin_stroke()
        self._image.fill(Qt.GlobalColor.transparent)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._image = self._undo.pop()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    # -- as pixels --------------------------------------------------------------------------------------------
    def to_array(self) -> np.ndarray:
        """The mask: uint8 H×W, 255 = repaint (or the scribble's lines)."""
        image = self._image.convertToFormat(QImage.Format.Format_ARGB32)
        h, w = image.height(), image.width()
        raw = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
        # ARGB32 is stored as B, G, R, A bytes on little-endian machines, A, R, G, B on big-endian ones.
        alpha = 3 if np.little_endian else 0
        return raw.reshape(h, image.bytesPerLine() // 4, 4)[:, :w, alpha].copy()

    def set_array(self, mask: np.ndarray, remember: bool = True) -> None:
        """Replace the layer with ``mask`` (uint8 H×W, the layer's size; 255 = repaint)."""
        h, w = mask.shape
        if (w, h) != self.size:
            raise ValueError(f"The mask is {w}×{h}; the picture is {self.size[0]}×{self.size[1]}.")
        if remember:
            self.begin_stroke()
        a = mask.astype(np.uint16)
        pixels = np.empty((h, w, 4), np.uint8)  # premultiplied B, G, R, A (little-endian byte order)
        colour = (self.color.blue(), self.color.green(), self.color.red())
        for i, c in enumerate(colour):
            pixels[..., i] = (a * c // 255).astype(np.uint8)
        pixels[..., 3] = mask
        if not np.little_endian:
            pixels = pixels[..., ::-1]
        image = QImage(np.ascontiguousarray(pixels).data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
        self._image = image.copy()  # own the pixels: the array goes away

    def is_empty(self) -> bool:
        return not self.to_array().any()


class MaskCanvas(QWidget):
    """The picture, fitted to the widget, with the layer over it; the mouse paints (left) into the layer."""

    #: the layer changed (a stroke ended, undo, invert, clear)
    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._background: QImage | None = None
        self.layer: MaskLayer | None = None
        self.radius = 16.0
        self.softness = 0.3
        self.erasing = False
        self.overlay_opacity = 0.55
        self._last: QPointF | None = None
        self._hover: QPointF | None = None

    def set_picture(self, background: QImage, layer: MaskLayer, overlay_opacity: float = 0.55) -> None:
        self._background = background
        self.layer = layer
        self.overlay_opacity = overlay_opacity
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(560, 560)

    def image_rect(self) -> QRect:
        """Where the picture is drawn: fitted with a margin, aspect kept, centred."""
        if self.layer is None:
            return QRect()
        w, h = self.layer.size
        size = QSize(w, h).scaled(self.size() - QSize(24, 24), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect(QPoint((self.width() - size.width()) // 2, (self.height() - size.height()) // 2), size)

    def to_picture(self, pos: QPointF) -> QPointF:
        """A widget position in the picture's pixels."""
        rect = self.image_rect()
        w, h = self.layer.size
        return QPointF((pos.x() - rect.left()) * w / max(1, rect.width()),
                       (pos.y() - rect.top()) * h / max(1, rect.height()))

    def _scale(self) -> float:
        rect = self.image_rect()
        return rect.width() / max(1, self.layer.size[0]) if self.layer else 1.0

    # -- mouse ------------------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.layer is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        self.layer.begin_stroke()
        self._last = self.to_picture(event.position())
        self.layer.dab_line(self._last, self._last, self.radius, self.softness, self.erasing)
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._hover = event.position()
        if self._last is not None and self.layer is not None:
            point = self.to_picture(event.position())
            self.layer.dab_line(self._last, point, self.radius, self.softness, self.erasing)
            self._last = point
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._last is not None:
            self._last = None
            self.changed.emit()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._hover = None
        self.update()

    # -- painting ---------------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Base).darker(115))
        if self.layer is not None:
            rect = self.image_rect()
            smooth = Qt.TransformationMode.SmoothTransformation
            if self._background is not None:
                painter.drawImage(rect, self._background.scaled(rect.size(), Qt.AspectRatioMode.IgnoreAspectRatio,
                                                                smooth))
            painter.setOpacity(self.overlay_opacity)
            painter.drawImage(rect, self.layer.image())
            painter.setOpacity(1.0)
            if self._hover is not None:
                painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
                painter.setPen(QPen(QColor(255, 255, 255, 200), 1))
                r = self.radius * self._scale()
                painter.drawEllipse(self._hover, r, r)
        painter.end()


class MaskEditor(QWidget):
    """The mask canvas with its tools. ``done`` asks the window to show the live canvas again."""

    done = Signal()
    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = MaskCanvas()
        self.title = QLabel()
        self.title.setObjectName("PreviewExplain")
        self.brush = QToolButton(text="Brush", checkable=True, checked=True, toolTip="Paint what to repaint (B)")
        self.eraser = QToolButton(text="Eraser", checkable=True, toolTip="Take paint away (E)")
        tools = QButtonGroup(self)
        for tool in (self.brush, self.eraser):
            tool.setObjectName("ModeButton")  # styled like the preview switches: the chosen tool stands out
            tools.addButton(tool)
        self.size_box = QSpinBox(minimum=1, maximum=512, value=16, suffix=" px", toolTip="Brush radius in the "
                                 "picture's pixels ([ and ] change it)")
        self.softness_box = QSpinBox(minimum=0, maximum=100, value=30, suffix=" %",
                                     toolTip="How far the brush's edge fades out")
        self.invert_button = QToolButton(text="Invert", toolTip="Repaint what is unpainted, and keep what is painted")
        self.clear_button = QToolButton(text="Clear", toolTip="Remove all paint")
        self.undo_button = QToolButton(text="Undo", toolTip="Undo the last stroke (Ctrl+Z)")
        self.done_button = QPushButton("Done")
        self.done_button.setToolTip("Back to the live canvas; the mask is kept for the next Generate")
        row = QHBoxLayout()
        row.setSpacing(4)
        for widget in (self.brush, self.eraser, QLabel("Size"), self.size_box, QLabel("Softness"), self.softness_box,
                       self.invert_button, self.clear_button, self.undo_button):
            row.addWidget(widget)
        row.addStretch(1)
        row.addWidget(self.done_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.canvas, 1)

        self.eraser.toggled.connect(lambda on: setattr(self.canvas, "erasing", on))
        self.size_box.valueChanged.connect(lambda v: setattr(self.canvas, "radius", float(v)))
        self.softness_box.valueChanged.connect(lambda v: setattr(self.canvas, "softness", v / 100))
        self.invert_button.clicked.connect(lambda: self._act(MaskLayer.invert))
        self.clear_button.clicked.connect(lambda: self._act(MaskLayer.clear))
        self.undo_button.clicked.connect(lambda: self._act(MaskLayer.undo))
        self.done_button.clicked.connect(self.done)
        self.canvas.changed.connect(self._changed)
        for keys, slot in (("Ctrl+Z", lambda: self._act(MaskLayer.undo)), ("B", self.brush.click),
                           ("E", self.eraser.click), ("[", lambda: self.size_box.stepBy(-2)),
                           ("]", lambda: self.size_box.stepBy(2))):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self._changed()

    def edit(self, title: str, background: QImage, layer: MaskLayer, overlay_opacity: float = 0.55) -> None:
        """Paint into ``layer`` over ``background``; the brush starts at a size that suits the picture."""
        self.title.setText(title)
        self.canvas.set_picture(background, layer, overlay_opacity)
        self.size_box.setValue(max(2, round(max(layer.size) / 16)))
        self._changed()

    def _act(self, action) -> None:
        if self.canvas.layer is not None:
            action(self.canvas.layer)
            self.canvas.update()
            self._changed()

    def _changed(self) -> None:
        self.undo_button.setEnabled(self.canvas.layer is not None and self.canvas.layer.can_undo)
        self.changed.emit()
