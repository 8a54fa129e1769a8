"""A small line plot drawn with QPainter (no plotting library): one curve over training time t, a marker at the
t shown and an optional second marker (where img2img starts). GUI thread only."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

CURVE = QColor(90, 170, 255)
MARKER = QColor(255, 110, 80)
START = QColor(120, 220, 120)


class CurvePlot(QWidget):
    """``values[t]`` for t = 0 … T−1, on a linear or a log₁₀ axis."""

    def __init__(self, title: str, *, log: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.log = log
        self._values: np.ndarray | None = None
        self.marker: int | None = None
        self.start: int | None = None
        self.start_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMinimumSize(160, 90)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return QSize(240, 120)

    @property
    def values(self) -> np.ndarray | None:
        return self._values

    def set_values(self, values: np.ndarray | None) -> None:
        self._values = None if values is None else np.asarray(values, dtype=np.float64)
        self.update()

    def set_markers(self, t: int | None, start: int | None = None, start_text: str = "") -> None:
        self.marker, self.start, self.start_text = t, start, start_text
        self.setToolTip(self.describe())
        self.update()

    def value_at(self, t: int) -> float:
        return float(self._values[t]) if self._values is not None and 0 <= t < len(self._values) else math.nan

    def describe(self) -> str:
        if self.marker is None or self._values is None:
            return self.title
        text = f"{self.title} at t = {self.marker}: {self.value_at(self.marker):.4g}"
        if self.start is not None:
            text += f"\n{self.start_text or 'img2img start'}: t = {self.start}, {self.value_at(self.start):.4g}"
        return text

    # -- painting ---------------------------------------------------------------------------------------------
    def _mapped(self) -> np.ndarray:
        v = self._values
        if self.log:
            v = np.log10(np.clip(v, 1e-12, None))
        return v

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        fm = painter.fontMetrics()
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        title = self.title + (" (log)" if self.log else "")
        if self.marker is not None and self._values is not None:
            title += f"   t={self.marker}: {self.value_at(self.marker):.3g}"
        painter.drawText(QPointF(6, fm.ascent() + 3), title)
        area = QRectF(6, fm.height() + 8, self.width() - 12, self.height() - fm.height() - 14)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.drawRect(area)
        if self._values is None or len(self._values) < 2 or area.width() < 4 or area.height() < 4:
            painter.end()
            return
        v = self._mapped()
        lo, hi = float(np.min(v)), float(np.max(v))
        span = hi - lo or 1.0
        n = len(v)

        def point(t: int) -> QPointF:
            return QPointF(area.left() + area.width() * t / (n - 1),
                           area.bottom() - area.height() * (float(v[t]) - lo) / span)

        path = QPainterPath(point(0))
        stride = max(1, n // max(1, int(area.width())))
        for t in range(stride, n, stride):
            path.lineTo(point(t))
        path.lineTo(point(n - 1))
        painter.setPen(QPen(CURVE, 1.6))
        painter.drawPath(path)
        for t, colour, style in ((self.start, START, Qt.PenStyle.DashLine), (self.marker, MARKER, Qt.PenStyle.SolidLine)):
            if t is None or not 0 <= t < n:
                continue
            x = point(t).x()
            painter.setPen(QPen(colour, 1.4, style))
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
            painter.setBrush(colour)
            painter.drawEllipse(point(t), 3, 3)
        painter.end()
