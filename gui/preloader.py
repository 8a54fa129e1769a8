"""Keep the model the form names loaded while the person types: once the engine is ready, and whenever another
model is chosen, the engine loads it in the background (:meth:`engine.engine.Engine.preload`), so pressing
Generate shows the first step at once instead of after the load. GUI thread only."""

from __future__ import annotations

from PySide6.QtCore import QObject

from engine.events import StatusChanged


class ModelPreloader(QObject):
    def __init__(self, bridge, form, parent: QObject | None = None):
        super().__init__(parent)
        self._bridge, self._form = bridge, form
        self._ready = False
        bridge.status_changed.connect(self._on_status)
        form.value_changed.connect(self._on_value)

    def _on_status(self, event: StatusChanged) -> None:
        if not self._ready and event.device and not event.busy:  # the engine's first "Ready"
            self._ready = True
            self._preload()

    def _on_value(self, name: str, _value) -> None:
        if name == "model" and self._ready:
            self._preload()

    def _preload(self) -> None:
        model = self._form.value("model")
        if model and not self._bridge.closed:
            self._bridge.preload(str(model))
