"""The Diffusion Lab's engine side with a tiny random-weight model: per-step replay frames, the guidance probe,
forward-process jobs checked against the formula, and the command line's grid and --animation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.engine import JobOptions
from engine.events import (
    Cancelled,
    Failed,
    Finished,
    ForwardFrame,
    ImageReady,
    Preview,
    ReplayDecoded,
)
from engine.forward import schedule_from_config
from engine.forward_job import ForwardRequest, fitted_size
from engine.replay import MAX_SIDE, LinearRGB, ReplayRecorder, ReplayRefiner
from tests.engine_helpers import Recorder, make_engine, request_for


@pytest.fixture
def engine_run(tiny_model_dir):
    recorder = Recorder()
    engine = make_engine(recorder)  # a preview at every step (interval 0)
    yield engine, recorder
    engine.shutdown(timeout=30)


def _run(engine_run, request, options=JobOptions()):
    engine, recorder = engine_run
    job = engine.submit(request, options)
    recorder.wait_for(job)
    return job, recorder


# -- replay ---------------------------------------------------------------------------------------------------------
def test_every_step_leaves_one_read_only_frame_equal_to_its_live_preview(engine_run, tiny_model_dir):
    job, rec = _run(engine_run, request_for(tiny_model_dir, steps=5, batch_count=2))
    ready = rec.of(job, ImageReady)
    assert len(ready) == 2
    for r in ready:
        assert len(r.replay) == 5
        assert all(f.shape == (8, 8, 3) and f.dtype == np.uint8 and not f.flags.writeable for f in r.replay)
        assert not r.replay_pending  # the linear map is all a model without decoded previews gets
        previews = [p for p in rec.of(job, Preview) if p.image_index == r.image_index]
        assert [p.step for p in previews] == [1, 2, 3, 4, 5]
        for p in previews:  # the same linear map of the same x0
            assert np.array_equal(p.image, r.replay[p.step - 1])
    assert not np.array_equal(ready[0].replay[-1], ready[1].replay[-1]), "seed + 1 must give another replay"


def test_replay_is_recorded_whatever_the_preview_throttle_and_can_be_switched_off(tiny_model_dir):
    rec = Recorder()
    engine = make_engine(rec, interval=3600.0)  # one preview per job at most
    try:
        job = engine.submit(request_for(tiny_model_dir, steps=6))
        rec.wait_for(job)
        assert len(rec.of(job, Preview)) == 1
        assert len(rec.of(job, ImageReady)[0].replay) == 6
        job = engine.submit(request_for(tiny_model_dir, steps=6), JobOptions(replay=False))
        rec.wait_for(job)
        assert rec.of(job, ImageReady)[0].replay == ()
    finally:
        engine.shutdown(timeout=30)


class _Preview:
    factors = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    bias = (0.0, 0.0, 0.0)


def _decoding_copy(model_dir, folder):
    """A copy of the tiny model whose preview.json asks for decoded previews, as the bundled model's does."""
    import json
    import shutil

    shutil.copytree(model_dir, folder)
    (folder / "preview.json").write_text(json.dumps({"factors": [[0.3, 0.2, 0.2]] * 4, "bias": [0, 0, 0],
                                                     "decode": True}))
    return folder


def test_a_decoding_model_gets_its_replay_decoded_after_the_job_and_a_new_job_never_waits_for_it(tiny_model_dir,
                                                                                                 tmp_path):
    import threading

    model = _decoding_copy(tiny_model_dir, tmp_path / "decoding")
    decoded: list = []
    all_three = threading.Event()  # two pictures of the first job, one of the second

    def hook(event) -> None:
        if isinstance(event, ReplayDecoded):
            decoded.append(event)
            if len(decoded) == 3:
                all_three.set()

    rec = Recorder(hook=hook)
    engine = make_engine(rec)  # a preview (a decode) at every step
    try:
        first = engine.submit(request_for(model, steps=5, batch_count=2))
        second = engine.submit(request_for(model, steps=3, seed=7))  # queued: runs before any replay is decoded
        assert all_three.wait(120), "every picture's replay must be decoded"
        end_of_second = rec.events.index(rec.of(second, Finished)[0])
        assert all(rec.events.index(e) > end_of_second for e in decoded)
        for ready in rec.of(first, ImageReady) + rec.of(second, ImageReady):
            assert all(f.shape == (8, 8, 3) for f in ready.replay) and not ready.replay_decoded  # linear map first
            assert ready.replay_pending
            event = next(e for e in rec.events if isinstance(e, ReplayDecoded) and e.job_id == ready.job_id
                         and e.image_index == ready.image_index)
            assert len(event.frames) == len(ready.replay)
            assert all(f.shape == (64, 64, 3) and not f.flags.writeable for f in event.frames)
            previews = [p for p in rec.of(ready.job_id, Preview) if p.image_index == ready.image_index]
            for p in previews:  # the live previews were decodes of the same x0
                assert np.array_equal(p.image, event.frames[p.step - 1])
    finally:
        engine.shutdown(timeout=30)


def test_the_refiner_drops_replays_of_another_model_a_failing_decode_and_the_oldest_beyond_its_bound():
    events = []
    refiner = ReplayRefiner(events.append)
    frame = np.zeros((4, 4, 3), np.uint8)
    assert not refiner.step("a", lambda x: frame)  # nothing waits
    refiner.add(1, 0, "a", [0, 1])
    refiner.add(2, 0, "b", [0])
    refiner.add(3, 0, "a", [0])
    refiner.add(4, 0, "a", [])  # no latents: nothing to decode
    while refiner.step("a", lambda x: frame):
        pass
    # every replay hears once; job 2 was another model's, so it keeps its quick frames (empty)
    assert [(e.job_id, len(e.frames)) for e in events] == [(1, 2), (2, 0), (3, 1)]

    def broken(x):
        raise RuntimeError("decoder exploded")

    events.clear()
    refiner.add(5, 0, "a", [0])
    assert refiner.step("a", broken) and refiner.waiting == 0 and [(e.job_id, e.frames) for e in events] == [(5, ())]
    events.clear()
    n = ReplayRefiner.MAX_WAITING + 3
    assert all(refiner.add(job, 0, "a", [0]) for job in range(n)) and not refiner.add(n, 0, "a", [])
    assert refiner.waiting == ReplayRefiner.MAX_WAITING and [(e.job_id, e.frames) for e in events] == [
        (0, ()), (1, ()), (2, ())]  # the oldest gave way
    while refiner.step("a", lambda x: frame):
        pass
    assert [e.job_id for e in events[3:]] == list(range(3, n)) and all(e.frames for e in events[3:])
    refiner.add(7, 1, "a", [0, 0])
    refiner.clear()  # the model goes away
    assert (events[-1].job_id, events[-1].image_index, events[-1].frames) == (7, 1, ())


def test_replay_frames_are_pooled_to_bound_memory():
    import torch

    recorder = ReplayRecorder(LinearRGB(_Preview()))
    recorder.start_image()
    for _ in range(3):  # a 2048² SDXL-sized latent
        recorder.add(torch.zeros(1, 4, 256, 256))
    frames = recorder.frames()
    assert len(frames) == 3 and max(frames[0].shape[:2]) <= MAX_SIDE
    # 150 steps of the largest frame stay under 30 MB
    assert 150 * MAX_SIDE * MAX_SIDE * 3 < 30 * 2**20
    recorder.start_image()
    assert recorder.frames() == ()


def test_linear_map_is_the_preview_arithmetic():
    import torch

    x = torch.tensor([[[[0.5]], [[-1.0]], [[0.0]], [[3.0]]]])  # 1×4×1×1
    rgb = LinearRGB(_Preview()).rgb(x)
    assert rgb.tolist() == [[[191, 0, 127]]]  # (v + 1)·127.5, clipped
    assert LinearRGB(_Preview()).rgb(x * 0, bias=False).tolist() == [[[127, 127, 127]]]  # no change = mid grey


# -- guidance probe -------------------------------------------------------------------------------------------------
def test_guidance_probe_captures_both_predictions_at_the_chosen_step(engine_run, tiny_model_dir):
    job, rec = _run(engine_run, request_for(tiny_model_dir, steps=5, cfg=7.0), JobOptions(inspect_step=3))
    g = rec.of(job, ImageReady)[0].guidance
    assert g is not None and (g.step, g.total, g.cfg) == (3, 5, 7.0)
    for image in (g.uncond, g.cond, g.term, g.guided):
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8 and not image.flags.writeable
    assert g.term_rms > 0 and not np.array_equal(g.uncond, g.cond)
    # uncond + cfg·(cond − uncond) is the x0 the sampler went on with: the live preview of step 3
    preview = next(p for p in rec.of(job, Preview) if p.step == 3)
    assert np.abs(preview.image.astype(int) - g.guided.astype(int)).max() <= 1


def test_a_decoding_models_guidance_probe_shows_decoded_pictures_and_their_difference(tiny_model_dir, tmp_path):
    model = _decoding_copy(tiny_model_dir, tmp_path / "decoding")
    rec = Recorder()
    engine = make_engine(rec)
    try:
        job = engine.submit(request_for(model, steps=4, cfg=7.0), JobOptions(inspect_step=2))
        rec.wait_for(job)
    finally:
        engine.shutdown(timeout=30)
    g = rec.of(job, ImageReady)[0].guidance
    for image in (g.uncond, g.cond, g.term, g.guided):
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and not image.flags.writeable
    preview = next(p for p in rec.of(job, Preview) if p.step == 2)  # the decode of the x0 the sampler went on with
    assert np.abs(preview.image.astype(int) - g.guided.astype(int)).max() <= 1
    expected = np.clip(127.5 + (g.guided.astype(np.float32) - g.uncond) / 2, 0, 255).round()
    assert np.array_equal(g.term, expected.astype(np.uint8)) and not np.array_equal(g.uncond, g.cond)


def test_guidance_probe_without_cfg_or_out_of_range_captures_nothing(engine_run, tiny_model_dir):
    job, rec = _run(engine_run, request_for(tiny_model_dir, steps=4, cfg=1.0), JobOptions(inspect_step=2))
    assert rec.of(job, ImageReady)[0].guidance is None
    job, rec = _run(engine_run, request_for(tiny_model_dir, steps=4), JobOptions(inspect_step=9))
    assert rec.of(job, ImageReady)[0].guidance is None and rec.of(job, Finished)


def test_cfg_scale_changes_only_the_guidance_term_not_its_halves(engine_run, tiny_model_dir):
    captures = []
    for cfg in (2.0, 8.0):
        job, rec = _run(engine_run, request_for(tiny_model_dir, steps=3, cfg=cfg), JobOptions(inspect_step=1))
        captures.append(rec.of(job, ImageReady)[0].guidance)
    low, high = captures
    assert np.array_equal(low.uncond, high.uncond) and np.array_equal(low.cond, high.cond)  # step 1: same x_T
    assert high.term_rms == pytest.approx(4 * low.term_rms, rel=1e-4)


# -- forward process ------------------------------------------------------------------------------------------------
def _picture() -> np.ndarray:
    yy, xx = np.mgrid[0:40, 0:60]
    return np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)


def test_forward_frames_are_the_formula_decoded(engine_run, tiny_model_dir):
    import torch

    from engine.devices import choose_device
    from engine.loader import load_model
    from engine.models import resolve

    ts = (0, 250, 999)
    job, rec = _run(engine_run, ForwardRequest(str(tiny_model_dir), ts, image=_picture(), seed=5))
    frames = rec.of(job, ForwardFrame)
    assert [f.t for f in frames] == list(ts) and rec.of(job, Finished)[0].images == 3

    model = load_model(resolve(str(tiny_model_dir)), choose_device("cpu"))
    config = dict(model.family.scheduler_config)
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler.from_config(config).alphas_cumprod.numpy()
    width, height = fitted_size(60, 40, 64)
    from engine.images import resize_to

    x0 = model.family.encode_image(resize_to(_picture(), width, height, "stretch")).float().numpy()
    eps = np.random.default_rng(5).standard_normal(x0.shape).astype(np.float32)
    for frame in frames:
        assert frame.signal == pytest.approx(np.sqrt(alphas[frame.t]), abs=1e-6)  # diffusers: float32
        assert frame.noise == pytest.approx(np.sqrt(1 - alphas[frame.t]), abs=1e-6)
        xt = np.sqrt(alphas[frame.t]) * x0 + np.sqrt(1 - alphas[frame.t]) * eps
        expected, _ = model.family.decode(torch.from_numpy(xt.astype(np.float32)))
        assert frame.image.shape == (height, width, 3)
        assert np.abs(frame.image.astype(int) - expected.astype(int)).max() <= 1
        assert schedule_from_config(frame.schedule).steps == 1000


def test_forward_requests_are_checked(engine_run, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="either an image or a path"):
        ForwardRequest("m", (1,))
    with pytest.raises(ValueError, match="uint8"):
        ForwardRequest("m", (1,), image=np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="steps"):
        ForwardRequest("m", (), image=_picture())
    with pytest.raises(ValueError, match="whole numbers"):
        ForwardRequest("m", (-1,), image=_picture())
    job, rec = _run(engine_run, ForwardRequest(str(tiny_model_dir), (1000,), image=_picture()))
    assert "0 to 999" in rec.of(job, Failed)[0].message
    job, rec = _run(engine_run, ForwardRequest(str(tiny_model_dir), (10,), path=str(tmp_path / "missing.png")))
    assert "does not exist" in rec.of(job, Failed)[0].message


def test_a_forward_job_from_a_file_can_be_cancelled_between_steps(tiny_model_dir, tmp_path):
    path = tmp_path / "pic.png"
    Image.fromarray(_picture()).save(path)
    engine_ref = {}

    def hook(event):
        if isinstance(event, ForwardFrame) and event.t == 10:
            engine_ref["engine"].cancel(event.job_id)

    rec = Recorder(hook)
    engine = make_engine(rec)
    engine_ref["engine"] = engine
    try:
        job = engine.submit(ForwardRequest(str(tiny_model_dir), (10, 20, 30), path=str(path)))
        rec.wait_for(job)
        assert [f.t for f in rec.of(job, ForwardFrame)] == [10]
        assert rec.of(job, Cancelled) and not rec.of(job, Finished)
    finally:
        engine.shutdown(timeout=30)


# -- command line ---------------------------------------------------------------------------------------------------
def test_generate_writes_the_animation_of_every_picture(tiny_model_dir, tmp_path, capsys):
    anim = tmp_path / "anim" / "steps.webp"
    code = main(["generate", "a red apple", "--model", str(tiny_model_dir), "--seed", "1", "--steps", "4",
                 "--size", "64x64", "--batch", "2", "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu",
                 "--animation", str(anim)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    second = anim.with_name("steps-2.webp")
    assert str(anim) in printed and str(second) in printed
    for path in (anim, second):
        with Image.open(path) as im:
            assert im.n_frames == 5  # one per step, then the picture
            assert im.size == (64, 64)


def test_generate_animates_a_decoding_models_decoded_replay(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import engine.lab_cli

    written = []
    real = engine.lab_cli.write_animation
    monkeypatch.setattr(engine.lab_cli, "write_animation", lambda ready, path: written.append(ready) or real(ready, path))
    model = _decoding_copy(tiny_model_dir, tmp_path / "decoding")
    anim = tmp_path / "steps.webp"
    code = main(["generate", "a red apple", "--model", str(model), "--seed", "1", "--steps", "3", "--size", "64x64",
                 "--batch", "2", "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu", "--animation", str(anim)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert str(anim) in printed and str(anim.with_name("steps-2.webp")) in printed
    assert sorted(r.image_index for r in written) == [0, 1]
    for ready in written:  # the VAE's decodes, at the picture's size, not the linear map's 8×8 frames
        assert ready.replay_decoded and [f.shape for f in ready.replay] == [(64, 64, 3)] * 3


def test_generate_refuses_an_animation_format_it_cannot_write(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "x", "--animation", "steps.mp4"])
    assert exit_.value.code == 2 and "webp or .gif" in capsys.readouterr().err


def test_grid_command_end_to_end(tiny_model_dir, tmp_path, darkroom_home, capsys):
    out = tmp_path / "grid.png"
    cells = tmp_path / "cells"
    code = main(["grid", "a red apple", "--x", "cfg=3,5,7", "--y", "seed=1,2", "--out", str(out),
                 "--model", str(tiny_model_dir), "--steps", "2", "--size", "64x64", "--sampler", "Euler",
                 "--cells", str(cells), "--quiet", "--device", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    saved = sorted(cells.glob("*.png"))
    assert len(saved) == 6
    recipes = set()
    for path in saved:
        with Image.open(path) as im:
            text = im.text["parameters"]
        assert text.startswith("a red apple\n") and "Steps: 2" in text and "Sampler: Euler" in text
        recipes.add((next(p for p in text.split(", ") if p.startswith("CFG scale")),
                     next(p for p in text.split(", ") if p.startswith("Seed"))))
    assert recipes == {(f"CFG scale: {c}", f"Seed: {s}") for c in (3, 5, 7) for s in (1, 2)}
    with Image.open(out) as im:
        assert im.width >= 3 * 64 and im.height >= 2 * 64
        assert "Seed: 1" in im.text["parameters"] and "CFG scale: 3" in im.text["parameters"]


def test_grid_cells_go_to_the_gallery_by_default(tiny_model_dir, tmp_path, darkroom_home, capsys):
    out = tmp_path / "g.png"
    assert main(["grid", "owl", "--x", "steps=1,2", "--out", str(out), "--model", str(tiny_model_dir),
                 "--size", "64x64", "--quiet", "--device", "cpu"]) == 0
    assert len(list((darkroom_home / "gallery").rglob("*.png"))) == 2 and out.is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--x", "cfg"], "looks like cfg=3,5,7"),
    (["--x", "colour=1,2"], "cannot be an axis"),
    (["--x", "cfg=1,2", "--z", "seed=1"], "needs a --y axis"),
    (["--x", "cfg=1,2", "--y", "cfg=3"], "one axis only"),
    (["--x", "steps=0,2"], "Steps must be from 1"),
])
def test_grid_bad_axes_are_one_line_exit_2(args, fragment, tmp_path, capsys):
    assert main(["grid", "x", *args, "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_grid_out_must_be_a_png(tmp_path, capsys):
    assert main(["grid", "x", "--x", "cfg=1,2", "--out", str(tmp_path / "g.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err
