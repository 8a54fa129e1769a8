"""The bridge on its own: engine events from another thread become Qt signals on the GUI thread, the newest
preview of each job wins, QImages own their pixels, and shutting down never waits for the engine thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from PySide6.QtCore import QThread

from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, Started, StatusChanged
from engine.request import GenerationRequest
from gui.bridge import Bridge, newest_previews, to_qimage
from gui.testing import spin, wait_until

REQUEST = GenerationRequest(prompt="x", steps=50, width=64, height=64, seed=5)


def _image(value: int) -> np.ndarray:
    a = np.full((4, 6, 3), value, np.uint8)
    a[0, 0] = (value, 0, 255 - value)
    a.flags.writeable = False
    return a


@pytest.fixture
def bridge(qtbot):
    b = Bridge()  # the engine is never started: events are fed by hand from a plain thread
    yield b
    b.shutdown()
    assert b.wait_stopped(1.0)


def _from_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_events_from_a_worker_thread_arrive_on_the_gui_thread_in_order(bridge, qtbot):
    seen, threads = [], []
    for name in ("status_changed", "job_started", "progress", "preview", "image_ready", "job_finished",
                 "job_failed", "job_cancelled"):
        getattr(bridge, name).connect(lambda *a, n=name: (seen.append(n), threads.append(QThread.currentThread())))

    def work():
        bridge._on_engine_event(StatusChanged("Ready", device="CPU", dtype="float32"))
        bridge._on_engine_event(Started(1, REQUEST))
        bridge._on_engine_event(Progress(1, 1, 50, 0, 1, 10.0, 4.9))
        bridge._on_engine_event(Preview(1, _image(10), 1, 50, 0))
        bridge._on_engine_event(ImageReady(1, _image(20), REQUEST, 0, 1))
        bridge._on_engine_event(Finished(1, 1))
        bridge._on_engine_event(Failed(2, "internal", "boom"))
        bridge._on_engine_event(Cancelled(3))

    _from_thread(work)
    assert seen == [], "events were delivered synchronously on the worker thread"
    wait_until(lambda: len(seen) == 8)
    assert seen == ["status_changed", "job_started", "progress", "preview", "image_ready", "job_finished",
                    "job_failed", "job_cancelled"]
    assert all(t is QThread.currentThread() for t in threads)
    assert bridge.last_status.device == "CPU"


def test_only_the_newest_preview_of_each_job_in_a_burst_is_delivered(bridge, qtbot):
    got, ready = [], []
    bridge.preview.connect(lambda e, img: got.append((e.job_id, e.step, img.pixelColor(1, 1).red())))
    bridge.image_ready.connect(lambda e, img: ready.append(e.image_index))

    def burst():  # the GUI thread is busy in join() below, so all of these pile up
        for step in range(1, 31):
            bridge._on_engine_event(Preview(1, _image(step), step, 30, 0))
        bridge._on_engine_event(ImageReady(1, _image(200), REQUEST, 0, 2))
        for step in range(1, 4):
            bridge._on_engine_event(Preview(1, _image(100 + step), step, 30, 1))
        bridge._on_engine_event(Preview(2, _image(50), 1, 30, 0))  # another job's preview stays

    _from_thread(burst)
    wait_until(lambda: len(ready) == 1 and len(got) >= 2)
    spin(20)
    assert got == [(1, 3, 103), (2, 1, 50)], "stale previews were painted"
    assert bridge.previews_dropped == 32 and bridge.previews_delivered == 2


def test_newest_previews_keeps_order_and_other_events():
    events = [Preview(1, _image(1), 1, 9, 0), Progress(1, 1, 9, 0, 1, 1.0, 1.0), Preview(2, _image(1), 1, 9, 0),
              Preview(1, _image(2), 2, 9, 0), Finished(2, 1)]
    assert newest_previews(events) == [events[1], events[2], events[3], events[4]]
    assert newest_previews([]) == []


def test_shutdown_ignores_later_events_and_never_waits_for_the_engine(bridge, qtbot):
    seen = []
    bridge.job_started.connect(seen.append)
    tapped = []
    bridge.engine_tap = tapped.append
    bridge.shutdown()
    bridge.shutdown()  # twice is fine
    _from_thread(lambda: bridge._on_engine_event(Started(1, REQUEST)))
    spin(20)
    assert seen == [] and len(tapped) == 1  # the tap still sees it; the window does not
    with pytest.raises(RuntimeError):
        bridge.submit(REQUEST)
    assert not bridge.running


def test_qimage_owns_a_copy_of_the_pixels():
    a = np.zeros((3, 5, 3), np.uint8)
    a[1, 2] = (10, 20, 30)
    img = to_qimage(a)
    a[1, 2] = (99, 99, 99)
    del a
    c = img.pixelColor(2, 1)
    assert (img.width(), img.height()) == (5, 3)
    assert (c.red(), c.green(), c.blue()) == (10, 20, 30)
    strided = np.zeros((4, 8, 3), np.uint8)[:, ::2]
    strided[0, 1] = (1, 2, 3)
    assert to_qimage(strided).pixelColor(1, 0).blue() == 3
    with pytest.raises(ValueError):
        to_qimage(np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError):
        to_qimage(np.zeros((3, 5, 3), np.float32))


def test_forward_frames_arrive_as_their_own_signal_and_submit_passes_job_options(bridge, monkeypatch):
    from engine.engine import JobOptions
    from engine.events import ForwardFrame
    from engine.forward_job import ForwardRequest

    frames = []
    bridge.forward_frame.connect(lambda event, image: frames.append((event, image)))
    _from_thread(lambda: bridge._on_engine_event(ForwardFrame(4, 250, _image(30), 0.6, 0.8, {"beta_start": 0.001})))
    wait_until(lambda: frames)
    event, image = frames[0]
    assert event.t == 250 and (image.width(), image.height()) == (6, 4)
    assert image.pixelColor(0, 0).getRgb()[:3] == (30, 0, 225)

    calls = []
    monkeypatch.setattr(bridge.engine, "submit", lambda request, options: calls.append((request, options)) or 7)
    forward = ForwardRequest("some model", (1, 2), image=_image(1))
    assert bridge.submit(forward) == 7 and calls[0][0] is forward
    assert bridge.submit(REQUEST, JobOptions(inspect_step=3)) == 7 and calls[1][1] == JobOptions(inspect_step=3)


def test_the_preloader_loads_the_forms_model_once_ready_and_on_change(qtbot):
    from PySide6.QtCore import QObject, Signal

    from engine.events import StatusChanged
    from gui.preloader import ModelPreloader
    from gui.viewmodel import FormModel

    class FakeBridge(QObject):
        status_changed = Signal(object)
        closed = False

        def __init__(self):
            super().__init__()
            self.asked = []

        def preload(self, model):
            self.asked.append(model)

    bridge, form = FakeBridge(), FormModel()
    form.set_value("model", "first")
    ModelPreloader(bridge, form, bridge)
    form.set_value("model", "second")
    assert bridge.asked == []  # nothing before the engine is ready
    bridge.status_changed.emit(StatusChanged("Starting the engine…", busy=True))
    bridge.status_changed.emit(StatusChanged("Ready", device="CPU", dtype="float32"))
    form.set_value("model", "third")
    bridge.status_changed.emit(StatusChanged("third loaded", device="CPU", dtype="float32"))
    assert bridge.asked == ["second", "third"]
