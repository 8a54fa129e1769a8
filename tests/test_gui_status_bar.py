"""The window's status bar: the engine's status and short messages never draw over each other."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow

from engine.events import StatusChanged
from gui.status_bar import EngineStatusBar


def test_a_message_from_before_the_window_showed_hides_the_engine_status(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    bar = EngineStatusBar()
    window.setStatusBar(bar)
    bar.show_engine_status(StatusChanged("Loading darkroom-emoji…", busy=True))
    bar.showMessage("Settings for darkroom-emoji: 64 × 64, DDIM, CFG 5.")  # while the window is being built
    window.show()
    qtbot.waitExposed(window)
    assert bar.currentMessage() and bar.engine_label.isHidden()
    bar.clearMessage()
    assert bar.engine_label.isVisible() and bar.engine_label.text() == "Loading darkroom-emoji…"


def test_a_message_on_a_shown_window_hides_the_engine_status_until_it_ends(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    bar = EngineStatusBar()
    window.setStatusBar(bar)
    window.show()
    qtbot.waitExposed(window)
    bar.showMessage("Saved 00001.png", 50)
    assert bar.engine_label.isHidden()
    qtbot.waitUntil(lambda: not bar.currentMessage(), timeout=5000)
    assert bar.engine_label.isVisible()
