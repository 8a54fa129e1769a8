"""View → GPU memory: the memory mode the engine runs models in (:mod:`engine.memory`), kept in the settings and
applied from the next picture on. GUI thread only."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from engine import memory

TIPS = {
    "auto": "Low VRAM when the model's weights would fill most of the GPU's memory, Normal otherwise",
    "normal": "Keep the whole model on the GPU: the fastest",
    "low": "Move each part of the model to the GPU only while it runs, decode large pictures in tiles and run "
           "SD3's and Flux's T5 text encoder on the CPU: slower, for GPUs with little memory",
}


class MemoryModeMenu(QMenu):
    """The submenu; choosing a mode stores it in ``settings.memory_mode`` and tells ``bridge``."""

    def __init__(self, settings, bridge, parent: QWidget | None = None):
        super().__init__("GPU &memory", parent)
        self.setToolTipsVisible(True)
        self._settings, self._bridge = settings, bridge
        group = QActionGroup(self)
        group.setExclusive(True)
        self.actions_by_mode: dict[str, QAction] = {}
        for mode in memory.MODES:
            action = QAction(memory.LABELS[mode], group)
            action.setCheckable(True)
            action.setToolTip(TIPS[mode])
            action.setStatusTip(TIPS[mode])
            action.setChecked(mode == settings.memory_mode)
            action.triggered.connect(lambda _checked=False, m=mode: self.choose(m))
            self.addAction(action)
            self.actions_by_mode[mode] = action

    def choose(self, mode: str) -> None:
        self._settings.memory_mode = mode
        self.actions_by_mode[mode].setChecked(True)
        self._bridge.set_memory_mode(mode)
