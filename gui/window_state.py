"""The window's geometry, dock state and splitter sizes across launches, stored in the settings as base64 text.
GUI thread only."""

from __future__ import annotations

import base64

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QMainWindow, QSplitter

from engine.settings import Settings

DEFAULT_SIZE = (1280, 820)


def restore(window: QMainWindow, splitter: QSplitter, settings: Settings) -> None:
    """Put the window back as it was; a first launch (or unreadable state) gets the default size."""
    if not window.restoreGeometry(_unb64(settings.window_geometry)):
        window.resize(*DEFAULT_SIZE)
    window.restoreState(_unb64(settings.window_state))
    splitter.restoreState(_unb64(settings.splitter_state))


def store(window: QMainWindow, splitter: QSplitter, settings: Settings) -> None:
    settings.window_geometry = _b64(window.saveGeometry())
    settings.window_state = _b64(window.saveState())
    settings.splitter_state = _b64(splitter.saveState())


def _b64(data: QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def _unb64(text: str) -> QByteArray:
    """The bytes saved by :func:`_b64`; empty (which Qt's restore methods refuse harmlessly) when unreadable."""
    try:
        return QByteArray(base64.b64decode(text.encode("ascii"), validate=True))
    except ValueError:
        return QByteArray()
