import threading

import numpy as np
import pytest

from engine.events import Cancelled, Failed, Finished, ImageReady, Preview, Progress, Started, StatusChanged
from engine.engine import PreviewOptions
from engine.request import ControlPart, ImageRef, LoraRef, SourceImage
from engine.samplers import SAMPLER_NAMES
from tests.engine_helpers import Recorder, make_engine, request_for


def test_event_order_and_previews(engine, rec, tiny_model_dir):
    job = engine.submit(request_for(tiny_model_dir, steps=5))
    rec.wait_for(job)
    kinds = [type(e) for e in rec.of(job)]
    assert kinds[0] is Started and kinds[-1] is Finished
    assert kinds.index(ImageReady) > max(i for i, k in enumerate(kinds) if k in (Progress, Preview))
    progress = rec.of(job, Progress)
    assert [p.step for p in progress] == [1, 2, 3, 4, 5]
    assert all(p.total == 5 and p.its > 0 and p.eta_s >= 0 for p in progress)
    assert progress[-1].eta_s == 0
    previews = rec.of(job, Preview)
    assert 1 <= len(previews) <= 5  # interval 0: every step
    assert len(previews) == 5
    for p in previews:
        assert p.image.dtype == np.uint8 and p.image.shape == (8, 8, 3) and not p.image.flags.writeable
        assert p.kind == "x0"
    ready = rec.of(job, ImageReady)[0]
    assert ready.image.shape == (64, 64, 3) and ready.image.dtype == np.uint8 and not ready.image.flags.writeable
    assert ready.request.seed == 1234 and ready.model_name == "tiny-sd" and len(ready.model_hash) == 10
    assert ready.device == "CPU" and ready.dtype == "float32"
    status = [e for e in rec.events if isinstance(e, StatusChanged)]
    assert status[0].busy and any(s.device == "CPU" for s in status)


def test_throttled_previews_still_send_at_least_one(rec, tiny_model_dir):
    engine = make_engine(rec, interval=3600)
    try:
        job = engine.submit(request_for(tiny_model_dir, steps=6))
        rec.wait_for(job)
        assert len(rec.of(job, Preview)) == 1
        assert len(rec.of(job, Progress)) == 6
    finally:
        assert engine.shutdown(10)


def test_noisy_latent_mode_and_off(engine, rec, tiny_model_dir):
    engine.set_preview(PreviewOptions(mode="xt", interval_s=0))
    job = engine.submit(request_for(tiny_model_dir))
    rec.wait_for(job)
    x0_free = rec.of(job, Preview)
    assert x0_free and all(p.kind == "xt" for p in x0_free)
    engine.set_preview(PreviewOptions(mode="off"))
    job = engine.submit(request_for(tiny_model_dir))
    rec.wait_for(job)
    assert rec.of(job, Preview) == [] and len(rec.of(job, ImageReady)) == 1


def test_same_request_same_pixels_and_batch_uses_seed_plus_k(engine, rec, tiny_model_dir):
    a = engine.submit(request_for(tiny_model_dir, seed=7, batch_count=2))
    b = engine.submit(request_for(tiny_model_dir, seed=7))
    c = engine.submit(request_for(tiny_model_dir, seed=8))
    rec.wait_for(c)
    batch = rec.of(a, ImageReady)
    assert [r.request.seed for r in batch] == [7, 8]
    assert np.array_equal(batch[0].image, rec.of(b, ImageReady)[0].image)
    assert np.array_equal(batch[1].image, rec.of(c, ImageReady)[0].image)
    assert not np.array_equal(batch[0].image, batch[1].image)


def test_cancel_running_job_stops_within_a_step_and_engine_goes_on(tiny_model_dir):
    holder = {}

    def hook(event):
        if isinstance(event, Progress) and event.step == 2 and event.job_id == holder.get("job"):
            holder["engine"].cancel(event.job_id)

    rec = Recorder(hook)
    engine = make_engine(rec)
    holder["engine"] = engine
    try:
        holder["job"] = job = engine.submit(request_for(tiny_model_dir, steps=20))
        after = engine.submit(request_for(tiny_model_dir))
        rec.wait_for(after)
        assert isinstance(rec.of(job)[-1], Cancelled)
        assert rec.of(job, ImageReady) == []
        assert max(p.step for p in rec.of(job, Progress)) <= 3
        assert isinstance(rec.of(after)[-1], Finished) and len(rec.of(after, ImageReady)) == 1
    finally:
        assert engine.shutdown(10)


def test_cancel_queued_job_and_fifo_order(engine, rec, tiny_model_dir):
    first = engine.submit(request_for(tiny_model_dir, steps=6))
    second = engine.submit(request_for(tiny_model_dir))
    third = engine.submit(request_for(tiny_model_dir))
    assert engine.cancel(second)
    assert not engine.cancel(second)  # already gone
    rec.wait_for(third)
    assert [type(e) for e in rec.of(second)] == [Cancelled]
    starts = [e.job_id for e in rec.events if isinstance(e, Started)]
    assert starts == [first, third]
    assert engine.pending() == []


def test_missing_model_fails_clearly_then_engine_recovers(engine, rec, tiny_model_dir, tmp_path):
    bad = engine.submit(request_for(tmp_path / "nowhere"))
    good = engine.submit(request_for(tiny_model_dir))
    rec.wait_for(good)
    failed = rec.of(bad, Failed)[0]
    assert failed.kind == "model_not_found" and "nowhere" in failed.message
    assert isinstance(rec.of(good)[-1], Finished)


def test_corrupt_weights_fail_as_corrupt(engine, rec, tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    job = engine.submit(request_for(broken))
    rec.wait_for(job)
    failed = rec.of(job, Failed)[0]
    assert failed.kind == "model_corrupt"
    assert "damaged or incomplete" in failed.message and failed.details


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_makes_an_image(engine, rec, tiny_model_dir, sampler):
    job = engine.submit(request_for(tiny_model_dir, sampler=sampler, steps=3))
    rec.wait_for(job)
    assert isinstance(rec.of(job)[-1], Finished), rec.of(job)[-1]
    assert len(rec.of(job, Progress)) == 3
    assert 1 <= len(rec.of(job, Preview)) <= 3


def test_sdxl_family_runs_and_switches_models(engine, rec, tiny_model_dir, tiny_sdxl_dir):
    a = engine.submit(request_for(tiny_sdxl_dir, steps=3))
    b = engine.submit(request_for(tiny_model_dir, steps=3))
    rec.wait_for(b)
    assert rec.of(a, ImageReady)[0].model_name == "tiny-sdxl"
    assert rec.of(b, ImageReady)[0].model_name == "tiny-sd"


def test_shutdown_mid_job_cancels_and_joins(tiny_model_dir):
    import threading

    started = threading.Event()
    rec = Recorder(lambda e: started.set() if isinstance(e, Progress) else None)
    engine = make_engine(rec)
    job = engine.submit(request_for(tiny_model_dir, steps=150))
    assert started.wait(60)
    assert engine.shutdown(timeout=60)  # a bound against hanging, not a speed limit
    assert isinstance(rec.of(job)[-1], Cancelled) and rec.of(job, ImageReady) == []
    assert max(p.step for p in rec.of(job, Progress)) < 150  # stopped part way, not after running to the end
    assert not engine.running


def test_broken_receiver_does_not_kill_the_engine(tiny_model_dir):
    calls = []

    def receiver(event):
        calls.append(event)
        if isinstance(event, Preview):
            raise RuntimeError("receiver bug")

    from engine.engine import Engine, EngineOptions

    rec = Recorder()
    engine = Engine(lambda e: (receiver(e), rec(e)), EngineOptions(device="cpu"))
    try:
        job = engine.submit(request_for(tiny_model_dir))
        rec.wait_for(job)
    finally:
        assert engine.shutdown(10)


def test_requests_with_parts_not_available_yet_are_refused_clearly(engine, rec, tiny_model_dir, tmp_path):
    image = ImageRef("0" * 64, str(tmp_path / "source.png"))
    parts = {
        "loras": (dict(loras=(LoraRef("ink"),)), "There is no LoRA called 'ink'"),
        # Editing parts run; a picture that is not there is refused as clearly, before the model loads.
        "source": (dict(source=SourceImage(image)), "source image source.png is missing"),
        "controls": (dict(controls=(ControlPart("canny", image),)), "control image source.png is missing"),
    }
    jobs = {name: engine.submit(request_for(tiny_model_dir, **fields)) for name, (fields, _) in parts.items()}
    plain = engine.submit(request_for(tiny_model_dir, steps=2))
    rec.wait_for(plain)
    for name, (_, words) in parts.items():
        (failed,) = rec.of(jobs[name])
        assert isinstance(failed, Failed) and failed.kind == "validation", (name, failed)
        assert words in failed.message
    assert isinstance(rec.of(plain)[-1], Finished)


def test_preload_loads_the_model_before_the_first_job(engine, rec, tiny_model_dir):
    loaded = threading.Event()
    rec.hook = lambda e: isinstance(e, StatusChanged) and e.message.endswith("loaded") and loaded.set()
    engine.preload(str(tiny_model_dir))
    engine.start()
    assert loaded.wait(60), "the model was not preloaded"
    job = engine.submit(request_for(tiny_model_dir, steps=2))
    rec.wait_for(job)
    assert rec.of(job, ImageReady)
    loads = [e for e in rec.events if isinstance(e, StatusChanged) and e.message.startswith("Loading")]
    assert len(loads) == 1  # the job found the model loaded


def test_a_model_that_cannot_preload_fails_only_its_generation(engine, rec, tiny_model_dir, tmp_path):
    import logging

    tried = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record):
            if "preloading" in record.getMessage():
                tried.set()

    logger = logging.getLogger("engine.engine")
    watch, level = Watch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        engine.start()
        engine.preload(str(tmp_path / "no-such-model"))
        assert tried.wait(60), "the preload was not attempted"
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)
    job = engine.submit(request_for(tiny_model_dir, steps=2))
    rec.wait_for(job)
    assert rec.of(job, ImageReady) and not [e for e in rec.events if isinstance(e, Failed)]


def test_costly_previews_are_spaced_out_to_a_fifth_of_the_time():
    from engine.runtime import PREVIEW_SHARE, _JobClock

    clock = _JobClock()
    assert clock.preview_due(5.0, 0.05)  # a job's first preview always shows
    clock.last_preview, clock.preview_cost = 0.0, 0.02  # a 20 ms decode
    assert not clock.preview_due(0.06, 0.05)  # past the interval, but previews would take a third of the time
    assert clock.preview_due(0.02 / PREVIEW_SHARE + 0.01, 0.05)
    assert clock.preview_due(0.001, 0.0)  # interval 0 asks for every step, whatever it costs
    clock.preview_cost = 0.0002  # a linear map: only the interval counts
    assert clock.preview_due(0.05, 0.05) and not clock.preview_due(0.04, 0.05)
