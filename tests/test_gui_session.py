"""The session strip beside the canvas: this session's pictures, the newest first and selected."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from gui import theme
from tests.window_fixtures import fill_form, generate, pixels


@pytest.fixture
def themed(qapp):
    """Darkroom's own style, palette and style sheet for the test, then the test suite's again."""
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    theme.apply(qapp)
    yield qapp
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)
    qapp.setStyle(style)


def _rgb(image: QImage) -> np.ndarray:
    return pixels(image.convertToFormat(QImage.Format.Format_RGB888)).astype(float)


def test_the_selected_picture_is_shown_in_its_own_colours(themed, make_window, qtbot):
    window = make_window()
    window.show()
    qtbot.waitExposed(window)
    fill_form(window, steps=2)
    result = generate(window)
    strip = window.session.strip
    item = strip.item(0)
    assert strip.currentItem() is item  # the newest picture is the one selected
    QApplication.processEvents()
    rect = strip.visualItemRect(item)
    corner = strip.viewport().mapTo(window, rect.center())
    shot = _rgb(window.grab().toImage())[corner.y() - 24:corner.y() + 24, corner.x() - 24:corner.x() + 24]
    thumb = _rgb(result.thumbnail)
    cy, cx = thumb.shape[0] // 2, thumb.shape[1] // 2
    # The style tints a selected icon with the highlight colour (Darkroom's is red) unless told otherwise.
    difference = np.abs(shot.mean(axis=(0, 1)) - thumb[cy - 24:cy + 24, cx - 24:cx + 24].mean(axis=(0, 1)))
    assert difference.max() < 6, difference
