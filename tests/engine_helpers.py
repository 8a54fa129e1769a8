"""Running the real engine from tests: submit requests, collect every event until the jobs end."""

from __future__ import annotations

import threading
from typing import Callable

from engine.engine import Engine, EngineOptions, PreviewOptions
from engine.events import Cancelled, Event, Failed, Finished
from engine.request import build_request

END_EVENTS = (Finished, Failed, Cancelled)


class Recorder:
    """Collects events; ``wait_for(job_id)`` blocks until that job has ended."""

    def __init__(self, hook: Callable[[Event], None] | None = None):
        self.events: list[Event] = []
        self._ended: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.hook = hook

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
        if self.hook:
            self.hook(event)
        if isinstance(event, END_EVENTS):
            self._ended_for(event.job_id).set()

    def _ended_for(self, job_id: int) -> threading.Event:
        with self._lock:
            return self._ended.setdefault(job_id, threading.Event())

    def wait_for(self, job_id: int, timeout: float = 60.0) -> None:
        assert self._ended_for(job_id).wait(timeout), f"job {job_id} did not end in {timeout}s"

    def of(self, job_id: int, kind=None) -> list[Event]:
        return [e for e in self.events if e.job_id == job_id and (kind is None or isinstance(e, kind))]


def request_for(model_dir, **overrides):
    fields = dict(prompt="a red apple", seed=1234, steps=4, cfg=7.0, width=64, height=64,
                  sampler="Euler", model=str(model_dir))
    fields.update(overrides)
    return build_request(**fields).request


def make_engine(recorder: Recorder, interval: float = 0.0, mode: str = "x0") -> Engine:
    return Engine(recorder, EngineOptions(device="cpu", preview=PreviewOptions(mode=mode, interval_s=interval)))
