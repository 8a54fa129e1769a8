"""Helpers for the GUI tests that drive the window with the real engine (the ``make_window`` fixture is in
conftest.py): :class:`EngineHold`, which holds the engine's worker at a chosen step so that no test depends on how
fast the machine is, :func:`fill_form`, :func:`generate` and :func:`pixels`."""

from __future__ import annotations

import threading

import numpy as np

from engine.events import Event, Progress
from gui.main_window import MainWindow
from gui.testing import wait_until


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


def generate(window: MainWindow, saved: bool = False):
    """Press Generate and return the picture's Result once the job has ended (and, with ``saved``, once the
    gallery has saved it); an AssertionError with the banner's message when it fails."""
    got: list = []
    window.jobs.result_added.connect(got.append)
    assert window.generate() is not None, window.banner.message()
    wait_until(lambda: (got and not window.jobs.busy and (not saved or got[0].saved_path is not None))
               or window.jobs.progress.text == "Failed")
    assert got, window.banner.message()
    return got[0]


def pixels(image) -> np.ndarray:
    """A QImage in RGB888 as an H×W×3 array."""
    w, h = image.width(), image.height()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3)
