"""The window's status bar: what the engine is doing (warming up, loading a model, ready), a busy indicator, the
device and number format pictures are computed with, and on CUDA the GPU memory in use. Short messages from anywhere go to
:meth:`QStatusBar.showMessage` as usual. GUI thread only."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from engine.events import Progress, StatusChanged


class EngineStatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine_label = QLabel("Starting…")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumSize(90, 12)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.device_label = QLabel("")
        self.device_label.setToolTip("Where pictures are computed, and the number format used")
        self.vram_label = QLabel("")
        self.vram_label.setToolTip("GPU memory PyTorch holds now (View → GPU memory chooses how much a model keeps)")
        self.vram_label.hide()
        self.addWidget(self.engine_label, 1)
        self.addPermanentWidget(self.busy)
        self.addPermanentWidget(self.vram_label)
        self.addPermanentWidget(self.device_label)
        # QStatusBar hides its normal widgets for a message only if they are visible then; a message shown while
        # the window is still being built would be drawn over the engine's status once the window shows.
        self.messageChanged.connect(lambda text: self.engine_label.setVisible(not text))

    def watch(self, bridge) -> None:
        """Follow a :class:`gui.bridge.Bridge`'s engine status and progress."""
        bridge.status_changed.connect(self.show_engine_status)
        bridge.progress.connect(self.show_vram)

    def show_engine_status(self, event: StatusChanged) -> None:
        self.engine_label.setText(event.message)
        self.busy.setVisible(event.busy)
        if event.device:
            self.device_label.setText(f"{event.device} · {event.dtype}" if event.dtype else event.device)
        self.show_vram(event)

    def show_vram(self, event: StatusChanged | Progress) -> None:
        if event.vram_bytes is not None:
            self.vram_label.setText(f"VRAM {event.vram_bytes / 2**30:.1f} GiB")
            self.vram_label.show()
