"""The preview canvas: shows the live preview or a finished image, smoothly scaled to fit, aspect kept.

Painting is latest-wins: :meth:`PreviewCanvas.show_image` only stores the newest frame and asks for a repaint;
Qt folds repeated requests into one paint, so a burst of previews costs one paint of the newest. The scaled
copy is cached per frame and widget size, so a repaint for another reason (a tooltip, the window uncovering)
costs a blit.
"""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPalette, QPen, QResizeEvent
from PySide6.QtWidgets import QPushButton, QSizePolicy, QWidget

from .open_parameters import image_paths_from_mime
from .viewmodel import Frame


def smooth_scale(image: QImage, target: QSize) -> QImage:
    """``image`` scaled to ``target`` smoothly, also when blown up many times.

    Live previews are at latent resolution (a 512² picture previews at 64², the bundled emoji model at 16²). One
    bilinear step from 16 to 640 pixels shows the latent grid as a lattice of crosses; doubling in steps first
    gives a soft, even blur that reads as "developing" rather than "broken", and costs under a millisecond.
    """
    if target == image.size():
        return image.copy()
    smooth, ignore = Qt.TransformationMode.SmoothTransformation, Qt.AspectRatioMode.IgnoreAspectRatio
    while image.width() * 2 < target.width() and image.height() * 2 < target.height():
        image = image.scaled(image.width() * 2, image.height() * 2, ignore, smooth)
    return image.scaled(target, ignore, smooth)


class PreviewCanvas(QWidget):
    """Draws one image, or an empty-state message when there is none."""

    #: the person double-clicked the image (the window offers the full-size view / save)
    activated = Signal()
    #: a picture file was dropped on the canvas (the window starts editing it)
    image_dropped = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setAcceptDrops(True)
        self._image: QImage | None = None
        self._frame: Frame | None = None
        self._scaled: QImage | None = None
        self._scaled_key: tuple | None = None
        self._empty_title = "Nothing here yet"
        self._empty_text = "Type a prompt and press Generate (Ctrl+Enter)."
        self._caption = ""
        self._empty_button = QPushButton(self)
        self._empty_button.setObjectName("EmptyAction")
        self._empty_button.hide()
        self._empty_callback = None
        self._empty_button.clicked.connect(lambda: self._empty_callback and self._empty_callback())
        #: paints per frame kind ("preview", "final", "result"), for tests and diagnostics
        self.painted_kinds: Counter[str] = Counter()

    # -- content ----------------------------------------------------------------------------------------------
    def show_image(self, image: QImage, frame: Frame) -> None:
        if self._image is None:
            self._empty_button.hide()
        self._image = image
        self._frame = frame
        self._scaled = None
        self.update()

    def clear(self) -> None:
        self._image = None
        self._frame = None
        self._scaled = None
        self._place_empty_button()
        self.update()

    def set_empty_message(self, title: str, text: str, action_text: str = "", action=None) -> None:
        """What the canvas says when it has no image, with an optional button (e.g. "Add model…")."""
        self._empty_title, self._empty_text = title, text
        self._empty_callback = action
        self._empty_button.setText(action_text)
        self._place_empty_button()
        if self._image is None:
            self.update()

    def empty_message(self) -> tuple[str, str]:
        return self._empty_title, self._empty_text

    def _empty_layout(self) -> tuple[QRect, QRect]:
        side = min(self.width(), self.height()) * 0.55
        frame = QRect(0, 0, int(side), int(side))
        frame.moveCenter(self.rect().center() - QPoint(0, int(side * 0.12)))
        width = max(frame.width() + 80, min(self.width() - 24, 420))
        flags = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap
        height = self.fontMetrics().boundingRect(QRect(0, 0, width, 1000), flags, self._empty_text).height()
        text_rect = QRect(self.width() // 2 - width // 2, frame.bottom() + 14, width, height + 4)
        return frame, text_rect

    def _place_empty_button(self) -> None:
        show = self._image is None and self._empty_callback is not None and bool(self._empty_button.text())
        if show:
            _, text_rect = self._empty_layout()
            hint = self._empty_button.sizeHint()
            self._empty_button.setGeometry(
                self.width() // 2 - hint.width() // 2, text_rect.bottom() + 6, hint.width(), hint.height()
            )
        self._empty_button.setVisible(show)

    def set_caption(self, text: str) -> None:
        """A short line drawn over the bottom edge of the image (e.g. "Step 12/25 · model's guess")."""
        if text != self._caption:
            self._caption = text
            self.update()

    def image(self) -> QImage | None:
        return self._image

    def frame(self) -> Frame | None:
        return self._frame

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return QSize(560, 560)

    # -- painting ---------------------------------------------------------------------------------------------
    def image_rect(self) -> QRect:
        """Where the image is drawn: fit inside the widget with a margin, aspect kept, centred."""
        if self._image is None or self._image.isNull():
            return QRect()
        margin = 12
        avail = self.size() - QSize(2 * margin, 2 * margin)
        size = self._image.size().scaled(avail, Qt.AspectRatioMode.KeepAspectRatio)
        top_left = QPoint((self.width() - size.width()) // 2, (self.height() - size.height()) // 2)
        return QRect(top_left, size)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        self._scaled = None
        self._place_empty_button()
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        bg = self.palette().color(QPalette.ColorRole.Base).darker(115)
        painter.fillRect(self.rect(), bg)
        if self._image is None or self._image.isNull():
            self._paint_empty(painter)
        else:
            self._paint_image(painter)
        painter.end()
        if self._frame is not None and self._image is not None:
            self.painted_kinds[self._frame.kind] += 1

    def _paint_image(self, painter: QPainter) -> None:
        rect = self.image_rect()
        key = (self._image.cacheKey(), rect.size().width(), rect.size().height(), self.devicePixelRatioF())
        if self._scaled is None or self._scaled_key != key:
            dpr = self.devicePixelRatioF()
            target = QSize(round(rect.width() * dpr), round(rect.height() * dpr))
            self._scaled = smooth_scale(self._image, target)
            self._scaled.setDevicePixelRatio(dpr)
            self._scaled_key = key
        painter.drawImage(rect.topLeft(), self._scaled)
        painter.setPen(QPen(QColor(255, 255, 255, 28), 1))
        painter.drawRect(rect.adjusted(0, 0, -1, -1))
        if self._caption:
            font = QFont(self.font())
            font.setPointSizeF(font.pointSizeF() * 0.95)
            painter.setFont(font)
            fm = painter.fontMetrics()
            w = fm.horizontalAdvance(self._caption) + 16
            h = fm.height() + 8
            box = QRect(rect.left() + 8, rect.bottom() - h - 8, min(w, rect.width() - 16), h)
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor(235, 235, 235))
            painter.drawText(box.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                             fm.elidedText(self._caption, Qt.TextElideMode.ElideRight, box.width() - 16))

    def _paint_empty(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        frame, text_rect = self._empty_layout()
        pen = QPen(self.palette().color(QPalette.ColorRole.Mid), 2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRoundedRect(frame, 10, 10)
        title_font = QFont(self.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.35)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        painter.drawText(frame, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._empty_title)
        painter.setFont(self.font())
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                         self._empty_text)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if image_paths_from_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = image_paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.image_dropped.emit(paths[0])

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if self._image is not None:
            self.activated.emit()
        super().mouseDoubleClickEvent(event)
