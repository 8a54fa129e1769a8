"""The welcome dialog on Darkroom's very first launch (no settings file yet).

It says where pictures are computed (the device and precision, filled in when the engine reports them: the
window shows before torch is imported, so the dialog never waits for it) and where they are saved, with a
"Change…" button for the gallery folder. Closing it leaves the main window with the bundled model, ready to
generate. GUI thread only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.events import StatusChanged

if TYPE_CHECKING:
    from .main_window import MainWindow

#: Set to skip the dialog (benchmarks and checks that drive a fresh home without a person).
NO_WELCOME_ENV = "DARKROOM_NO_WELCOME"
DEVICE_PENDING = "finding out… (a CUDA GPU in float16, an Apple GPU in float16, otherwise the CPU in float32)"


def wanted(first_run: bool) -> bool:
    """Whether to greet: only on the very first launch, and not when the environment asks for none."""
    return first_run and not os.environ.get(NO_WELCOME_ENV)


class WelcomeDialog(QDialog):
    """``folder``: the gallery folder in use. :meth:`chosen_folder` is the one picked with Change…, if any."""

    def __init__(self, folder: Path, parent: QWidget | None = None,
                 choose_directory: Callable[[QWidget, str, str], str] = QFileDialog.getExistingDirectory):
        super().__init__(parent)
        self.setObjectName("WelcomeDialog")
        self.setWindowTitle("Welcome to Darkroom")
        self._folder = Path(folder)
        self._initial = Path(folder)
        self._choose_directory = choose_directory

        intro = QLabel("<h3>Welcome to Darkroom</h3><p>Type a prompt, press <b>Generate</b> (Ctrl+Enter) and "
                       "watch the picture develop out of noise. The bundled model, <i>darkroom-emoji</i>, "
                       "works offline right away; add your own models from the model menu.</p>")
        intro.setWordWrap(True)
        self.device_label = QLabel(DEVICE_PENDING)
        self.device_label.setObjectName("WelcomeDevice")
        self.device_label.setWordWrap(True)
        self.folder_label = QLabel()
        self.folder_label.setObjectName("WelcomeFolder")
        self.folder_label.setWordWrap(True)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.change_button = QPushButton("Change…")
        self.change_button.setToolTip("Choose another folder for your pictures")
        self.change_button.clicked.connect(self.choose_folder)

        device_row = QHBoxLayout()
        device_row.addWidget(QLabel("<b>Computing on:</b>"), 0, Qt.AlignmentFlag.AlignTop)
        device_row.addWidget(self.device_label, 1)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("<b>Pictures go to:</b>"), 0, Qt.AlignmentFlag.AlignTop)
        folder_row.addWidget(self.folder_label, 1)
        folder_row.addWidget(self.change_button, 0, Qt.AlignmentFlag.AlignTop)
        buttons = QDialogButtonBox()
        start = buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        start.setDefault(True)
        buttons.accepted.connect(self.accept)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(device_row)
        layout.addLayout(folder_row)
        layout.addWidget(QLabel("You can change both later: the folder in the File menu; the status bar always "
                                "shows the device. Help → Open log file shows what Darkroom did."))
        layout.addWidget(buttons)
        self.setMinimumWidth(520)
        self._show_folder()

    def show_engine_status(self, event: StatusChanged) -> None:
        """Fill in the device once the engine knows it (connected to the bridge's ``status_changed``)."""
        if event.device:
            self.device_label.setText(f"{event.device} · {event.dtype}" if event.dtype else event.device)

    def choose_folder(self) -> None:
        folder = self._choose_directory(self, "Choose the folder for your pictures", str(self._folder))
        if folder:
            self._folder = Path(folder)
            self._show_folder()

    def chosen_folder(self) -> Path | None:
        """The folder picked with Change…, or None when the person kept the one shown at first."""
        return self._folder if self._folder != self._initial else None

    def _show_folder(self) -> None:
        self.folder_label.setText(str(self._folder))


def greet(window: MainWindow) -> WelcomeDialog:
    """Show the welcome dialog over ``window`` (window-modal, without blocking the event loop), following the
    engine's device report; on Start, switch to a newly chosen gallery folder and save the settings, so the next
    launch is not a first one."""
    dialog = WelcomeDialog(window.gallery.folder(), window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    shown = window.status.device_label.text()
    if shown:  # the engine has already reported its device
        dialog.device_label.setText(shown)
    window.bridge.status_changed.connect(dialog.show_engine_status)

    def finished(_result: int) -> None:
        folder = dialog.chosen_folder()
        if folder is None or not window.set_gallery_folder(folder):
            window.save_settings()

    dialog.finished.connect(finished)
    dialog.open()
    return dialog
