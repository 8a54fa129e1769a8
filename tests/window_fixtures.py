"""Helpers for the GUI tests that drive the window with the real engine (the ``make_window`` fixture is in
conftest.py): :class:`EngineHold`, which holds the engine's worker at a chosen step so that no test depends on how
fast the machine is, and :func:`fill_form`."""

from __future__ import annotations

import threading

from engine.events import Event, Progress
from gui.main_window import MainWindow


class EngineHold:
    """An engine tap (:attr:`gui.bridge.Bridge.engine_tap`) that holds the worker thread at every event of type
    ``on`` from step ``at_step`` on, after the event has been queued for the window, until the test lets it pass."""

    def __init__(self, on: type = Progress, at_step: int = 1):
        self._on = on
        self._from = at_step
        self._cond = threading.Condition()
        self._passes = 0
        self._open = False
        self.waiting: Event | None = None  # the event the worker is held at

    def __call__(self, event: Event) -> None:  # engine thread
        if not isinstance(event, self._on) or event.step < self._from:
            return
        with self._cond:
            self.waiting = event
            self._cond.wait_for(lambda: self._open or self._passes > 0, timeout=60)
            self._passes = max(0, self._passes - 1)
            self.waiting = None

    def at_step(self, step: int) -> bool:
        event = self.waiting
        return event is not None and event.step == step

    def let_through(self, n: int = 1) -> None:
        with self._cond:
            self._passes += n
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


def fill_form(window: MainWindow, prompt: str = "a red fox in the snow", steps: int = 6, seed: int = 1234) -> None:
    window.form_model.set_values({"prompt": prompt, "steps": steps, "width": 64, "height": 64, "seed": seed,
                                  "batch_count": 1})
