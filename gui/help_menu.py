"""The Help menu's dialogs that tell about this installation: About (versions and device) and the log file.

GUI thread only; nothing here imports torch (versions come from package metadata, see
:func:`engine.selftest.versions`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

from engine import paths


def device_in_use(window: QWidget) -> str:
    """The device and precision the window's status bar shows ("" before the engine has reported them)."""
    status = getattr(window, "status", None)
    label = getattr(status, "device_label", None)
    return label.text() if label is not None else ""


def about_html(device: str) -> str:
    from engine.selftest import versions

    found = versions()
    rows = [*found.items(), ("Device", device or "not known yet (the engine is starting)")]
    table = "".join(f"<tr><td>{escape(k)}</td><td><b>{escape(v)}</b></td></tr>" for k, v in rows)
    return (
        f"<h3>Darkroom {escape(found['Darkroom'])}</h3><p>Watch pictures develop out of noise.</p>"
        "<p>The live view shows, at every step, what the model currently believes the finished picture "
        "looks like (x0), or the noisy latent it is working on (x_t).</p>"
        f"<table cellspacing='4'>{table}</table>"
        f"<p>Log file: {escape(str(paths.log_file()))}</p>"
    )


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "About Darkroom", about_html(device_in_use(parent)))


def open_log_file(parent: QWidget, open_url=QDesktopServices.openUrl) -> bool:
    """Open Darkroom's log file in the desktop's text viewer; say where it is when that cannot be done."""
    log = paths.log_file()
    if log.is_file() and open_url(QUrl.fromLocalFile(str(log))):
        return True
    where = log if log.is_file() else Path(log).parent
    QMessageBox.information(
        parent, "Log file",
        f"Darkroom writes its log to<br><b>{escape(str(log))}</b><br><br>"
        + ("It could not be opened here; open it with any text editor." if log.is_file()
           else f"There is no log there yet; {escape(str(where))} is where it will be."),
    )
    return False
