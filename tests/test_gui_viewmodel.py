"""The window's view-models without widgets: the form's values keyed by the registry, the one place for job state
(driven here by synthetic engine events), and the session's results with their memory bound."""

from __future__ import annotations

import numpy as np
import pytest

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine import fields, samplers
from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, ReplayDecoded, Started
from engine.request import GenerationRequest, ValidationError
from gui.results import Result, ResultStore
from gui.viewmodel import FormModel, JobsModel, progress_text

REQUEST = GenerationRequest(prompt="a fox", steps=6, width=64, height=64, seed=10)


# -- FormModel ------------------------------------------------------------------------------------------------------
def test_form_model_starts_at_the_registry_defaults(qapp):
    model = FormModel()
    assert list(model.values()) == [f.name for f in fields.FIELDS]
    assert model.values() == {f.name: f.default for f in fields.FIELDS}


def test_set_values_takes_registry_fields_and_refuses_what_a_field_cannot_hold(qapp):
    model = FormModel()
    changed = []
    model.value_changed.connect(lambda name, value: changed.append((name, value)))
    rejected = model.set_values({"prompt": "owl", "steps": 30, "cfg": 99.0, "sampler": "Nope", "seed": 42,
                                 "version": 2, "loras": []})
    assert rejected == ["cfg", "sampler"]
    assert changed == [("prompt", "owl"), ("seed", "42"), ("steps", 30)]
    assert model.value("cfg") == fields.FIELD["cfg"].default and model.value("sampler") == samplers.DEFAULT_SAMPLER
    model.set_values({"prompt": "owl"})
    assert len(changed) == 3, "an unchanged value was announced"
    with pytest.raises(KeyError):
        model.set_value("no_such_field", 1)
    assert model.set_values({"prompt": 5, "model": None}) == ["prompt", "model"]


def test_build_marks_the_rejected_fields_and_an_edit_clears_its_mark(qapp):
    model = FormModel()
    marks = []
    model.errors_changed.connect(marks.append)
    model.set_values({"prompt": "x", "seed": "twelve"})
    with pytest.raises(ValidationError):
        model.build()
    assert list(model.errors) == ["seed"] and "twelve" in model.errors["seed"]
    model.set_value("seed", "7")
    assert model.errors == {} and marks[-1] == {}
    built = model.build()
    assert built.request.seed == 7 and built.request.prompt == "x"


def test_build_writes_rounded_sizes_back_and_strips_text(qapp):
    model = FormModel()
    model.set_values({"prompt": "  a kite \n", "width": 100, "seed": ""})
    built = model.build()
    assert built.request.width == 104 and model.value("width") == 104
    assert built.request.prompt == "a kite" and model.value("prompt") == "  a kite \n"
    assert any("Width 100" in n for n in built.notices)
    assert 0 <= built.request.seed <= fields.SEED_MAX  # an empty seed means random


def test_last_seed_can_be_reused(qapp):
    model = FormModel()
    model.reuse_last_seed()
    assert model.value("seed") == "random"
    model.set_last_seed(1234)
    model.reuse_last_seed()
    assert model.value("seed") == "1234"


# -- JobsModel ------------------------------------------------------------------------------------------------------
class FakeBridge(QObject):
    """The bridge's signals and its submit/cancel, without an engine."""

    job_started = Signal(object)
    progress = Signal(object)
    preview = Signal(object, QImage)
    image_ready = Signal(object, QImage)
    replay_decoded = Signal(object)
    job_finished = Signal(object)
    job_failed = Signal(object)
    job_cancelled = Signal(object)

    def __init__(self):
        super().__init__()
        self.next_id = 0
        self.cancelled: list[int] = []

    def submit(self, request, options=None):
        self.next_id += 1
        self.options = options
        return self.next_id

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        return True


def _image(value: int = 0, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def _qimage(value: int = 0) -> QImage:
    image = QImage(8, 8, QImage.Format.Format_RGB888)
    image.fill(value)
    return image


@pytest.fixture
def jobs(qapp):
    bridge = FakeBridge()
    model = JobsModel(bridge)  # type: ignore[arg-type]
    model.fake = bridge
    return model


def _run_to_step(jobs: JobsModel, job_id: int, step: int) -> None:
    b = jobs.fake
    b.job_started.emit(Started(job_id, REQUEST))
    for s in range(1, step + 1):
        b.progress.emit(Progress(job_id, s, 6, 0, 1, 10.0, 0.1 * (6 - s)))
        b.preview.emit(Preview(job_id, _image(s), s, 6, 0), _qimage(s))


def test_a_job_runs_to_the_end(jobs):
    job = jobs.submit(REQUEST)
    assert [j.job_id for j in jobs.jobs()] == [job] and jobs.busy
    _run_to_step(jobs, job, 3)
    assert jobs.current_job == job and jobs.progress.running
    assert jobs.progress.value == 3 and jobs.progress.maximum == 6 and jobs.progress.text.startswith("Step 3/6")
    assert jobs.shown.frame.kind == "preview" and jobs.shown.frame.step == 3
    results = []
    jobs.result_added.connect(results.append)
    jobs.fake.image_ready.emit(ImageReady(job, _image(9), REQUEST, 0, 1, seconds=1.5), _qimage(9))
    jobs.fake.job_finished.emit(Finished(job, 1))
    assert len(results) == 1 and jobs.shown.result is results[0] and jobs.shown.frame.kind == "final"
    assert jobs.results.results() == results
    assert not jobs.busy and jobs.current_job is None
    assert jobs.progress.text == "Done: 1 picture" and not jobs.progress.running


def test_cancel_all_with_queued_jobs_returns_progress_to_idle(jobs):
    """After "Cancel all" the progress bar and title kept showing "Step 1/6 … 17 %"."""
    ids = [jobs.submit(REQUEST) for _ in range(3)]
    _run_to_step(jobs, ids[0], 1)
    assert jobs.progress.running and jobs.progress.text.startswith("Step 1/6")
    assert jobs.cancel_all() == 3
    assert jobs.fake.cancelled == ids
    assert jobs.jobs() == [] and jobs.current_job is None
    assert jobs.progress.text == "Cancelled" and not jobs.progress.running and jobs.progress.value == 0
    assert jobs.shown.caption == "Cancelled at step 1/6"
    for job in ids:  # the engine confirms later; nothing changes
        jobs.fake.job_cancelled.emit(Cancelled(job))
    jobs.fake.progress.emit(Progress(ids[0], 2, 6, 0, 1, 10.0, 0.4))
    assert jobs.progress.text == "Cancelled"


def test_cancelling_a_queued_job_leaves_the_running_one_alone(jobs):
    first, second = jobs.submit(REQUEST), jobs.submit(REQUEST)
    _run_to_step(jobs, first, 2)
    before = jobs.progress
    assert jobs.cancel(second) and not jobs.cancel(second)
    assert [j.job_id for j in jobs.jobs()] == [first] and jobs.progress == before


def test_cancel_current_takes_the_running_job_and_the_next_one_starts_fresh(jobs):
    first, second = jobs.submit(REQUEST), jobs.submit(REQUEST)
    assert jobs.cancel_current() and jobs.fake.cancelled == [first]  # nothing runs yet: the first queued one
    _run_to_step(jobs, second, 1)
    assert jobs.cancel_current() and jobs.fake.cancelled == [first, second]
    assert not jobs.cancel_current()


def test_events_of_jobs_not_shown_are_ignored(jobs):
    job = jobs.submit(REQUEST)
    jobs.cancel(job)
    results = []
    jobs.result_added.connect(results.append)
    _run_to_step(jobs, job, 2)
    jobs.fake.image_ready.emit(ImageReady(job, _image(), REQUEST, 0, 1), _qimage())
    jobs.fake.image_ready.emit(ImageReady(99, _image(), REQUEST, 0, 1), _qimage())  # never submitted here
    assert results == [] and jobs.shown is None and jobs.current_job is None


def test_a_failed_job_is_reported_once(jobs):
    job = jobs.submit(REQUEST)
    _run_to_step(jobs, job, 1)
    failed = []
    jobs.failed.connect(failed.append)
    jobs.fake.job_failed.emit(Failed(job, "model_not_found", "Model not found."))
    jobs.fake.job_failed.emit(Failed(job, "model_not_found", "Model not found."))
    jobs.fake.job_failed.emit(Failed(None, "internal", "The engine could not start."))
    assert [f.message for f in failed] == ["Model not found.", "The engine could not start."]
    assert jobs.progress.text == "Failed" and not jobs.busy


def test_an_earlier_result_stays_shown_until_back_to_live(jobs):
    job = jobs.submit(REQUEST)
    jobs.fake.job_started.emit(Started(job, REQUEST))
    jobs.fake.image_ready.emit(ImageReady(job, _image(), REQUEST, 0, 2), _qimage())
    earlier = jobs.results.results()[0]
    jobs.show_result(earlier)
    assert not jobs.follow_live and jobs.shown.frame.kind == "result"
    jobs.fake.preview.emit(Preview(job, _image(), 1, 6, 1), _qimage())
    assert jobs.shown.result is earlier, "a preview replaced the picture the person chose"
    jobs.follow_live_view()
    jobs.fake.preview.emit(Preview(job, _image(), 2, 6, 1), _qimage())
    assert jobs.shown.frame.kind == "preview" and jobs.shown.frame.step == 2


def test_jobs_record_their_replay_and_live_pictures_stay_out_of_the_session(jobs):
    from engine.engine import JobOptions

    results = []
    jobs.result_added.connect(results.append)
    frames = (_image(1), _image(2))
    for kind in ("live", "grid", ""):
        job = jobs.submit(REQUEST, kind=kind)
        assert jobs.fake.options == JobOptions(replay=True)
        jobs.fake.job_started.emit(Started(job, REQUEST))
        jobs.fake.image_ready.emit(ImageReady(job, _image(9), REQUEST, 0, 1, replay=frames), _qimage(9))
        jobs.fake.job_finished.emit(Finished(job, 1))
    assert [r.kind for r in results] == ["live", "grid", ""]
    assert jobs.results.results() == [results[2], results[1]]  # newest first, the live picture not listed
    assert all(r.replay is frames for r in results) and jobs.shown.result is results[2]
    jobs.submit(REQUEST, JobOptions(replay=False, inspect_step=2))
    assert jobs.fake.options == JobOptions(replay=False, inspect_step=2)


def test_decoded_replays_replace_the_quick_frames_of_kept_and_live_pictures_only_when_they_match(jobs):
    changed = []
    jobs.replay_decoded.connect(changed.append)
    shown = {}
    for kind in ("", "live"):
        job = jobs.submit(REQUEST, kind=kind)
        jobs.fake.job_started.emit(Started(job, REQUEST))
        jobs.fake.image_ready.emit(ImageReady(job, _image(9), REQUEST, 0, 1, replay=(_image(1), _image(2))),
                                   _qimage(9))
        jobs.fake.job_finished.emit(Finished(job, 1))
        shown[kind] = jobs.shown.result
    kept, live = shown[""], shown["live"]
    decoded = (_image(3), _image(4))
    jobs.fake.replay_decoded.emit(ReplayDecoded(kept.key[0], 0, decoded))  # in the session, no longer shown
    jobs.fake.replay_decoded.emit(ReplayDecoded(live.key[0], 0, decoded[:1]))  # not the same steps: ignored
    assert changed == [kept] and kept.replay == decoded and kept.ready.replay_decoded
    assert not live.ready.replay_decoded and len(live.replay) == 2
    jobs.fake.replay_decoded.emit(ReplayDecoded(live.key[0], 0, decoded))  # the live picture on the canvas
    jobs.fake.replay_decoded.emit(ReplayDecoded(99, 0, decoded))  # a job this window never knew
    assert changed == [kept, live] and live.replay == decoded


def test_progress_text_reads_well():
    assert progress_text(Progress(1, 3, 6, 0, 1, 12.5, 0.3)) == "Step 3/6  ·  12.5 it/s  ·  ETA 0.3 s"
    assert progress_text(Progress(1, 6, 6, 1, 3, 0.5, 75)) == "Image 2/3  ·  Step 6/6  ·  2.0 s/it  ·  ETA 1 min 15 s"
    assert progress_text(Progress(1, 6, 6, 0, 1, 0, 0)) == "Step 6/6"


# -- ResultStore ----------------------------------------------------------------------------------------------------
def _result(i: int, size: int = 64) -> Result:
    ready = ImageReady(i, _image(i % 255, size), REQUEST, 0, 1)
    image = QImage(size, size, QImage.Format.Format_RGB888)
    image.fill(i % 255)
    return Result.from_ready(ready, image)


def test_a_long_session_keeps_only_the_newest_full_images(qapp, tmp_path):
    store = ResultStore(keep_images=3, keep_entries=5)
    removed = []
    store.removed.connect(removed.extend)
    results = [_result(i) for i in range(8)]
    results[1].saved_path = str(tmp_path / "one.png")
    _result(1).image.save(results[1].saved_path)
    for r in results:
        store.add(r)
    assert [r.key[0] for r in store.results()] == [7, 6, 5, 4, 3]
    full = [r for r in store.results() if not r.trimmed]
    assert [r.key[0] for r in full] == [7, 6, 5]
    assert all(r.ready is None and r.image is None for r in store.results()[3:])
    assert all(r.thumbnail.width() <= 96 for r in store.results())
    assert [r.key[0] for r in removed] == [0, 1, 2] and store.get((0, 0)) is None
    assert "only a thumbnail" in results[4].describe()
    assert results[4].full_image() is results[4].thumbnail
    assert results[1].full_image().width() == 64  # a saved one is read back from its file


def test_result_store_needs_sensible_bounds(qapp):
    with pytest.raises(ValueError):
        ResultStore(keep_images=0)
    with pytest.raises(ValueError):
        ResultStore(keep_images=5, keep_entries=4)
