"""Picture editing through the real engine with tiny random-weight models: img2img, inpainting (blended and with
an inpainting U-Net), only-masked, outpainting, hires fix and ControlNet."""

from __future__ import annotations

import numpy as np
import pytest

from engine.edit import ControlInput, edit_parts
from engine.events import Failed, Finished, ImageReady, Preview, Progress, Started
from engine.request import HiresPart
from engine.samplers import SAMPLER_NAMES
from tests.engine_helpers import request_for

RNG = np.random.default_rng(7)
SOURCE = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
MASK = np.zeros((64, 64), np.uint8)
MASK[16:40, 20:52] = 255


@pytest.fixture
def gallery(tmp_path):
    return tmp_path / "gallery"


def run(engine, rec, model, **fields):
    """Submit one request and return (ImageReady or None, its Progress events, its Failed event or None)."""
    job = engine.submit(request_for(model, **fields))
    rec.wait_for(job)
    ready = rec.of(job, ImageReady)
    failed = rec.of(job, Failed)
    return (ready[0] if ready else None), rec.of(job, Progress), (failed[0] if failed else None)


def test_strength_sets_the_steps_run_and_zero_and_one_are_the_ends(engine, rec, tiny_model_dir, gallery):
    for strength, steps, runs in ((0.5, 4, 2), (0.3, 10, 3), (0.75, 4, 3)):
        ready, progress, _ = run(engine, rec, tiny_model_dir, steps=steps, **edit_parts(gallery, source=SOURCE,
                                                                                         strength=strength))
        assert [p.step for p in progress] == list(range(1, runs + 1)) and {p.total for p in progress} == {runs}
        assert ready.image.shape == (64, 64, 3)
    # Strength 0: the source itself, exactly, and the model never runs.
    ready, progress, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, strength=0.0))
    assert progress == [] and np.array_equal(ready.image, SOURCE)
    # Strength 1: a full generation from the seed's noise, the same picture as text-to-image.
    full, progress, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, strength=1.0))
    plain, _, _ = run(engine, rec, tiny_model_dir)
    assert len(progress) == 4 and np.array_equal(full.image, plain.image)
    half, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, strength=0.5))
    assert not np.array_equal(half.image, plain.image)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs_img2img_and_inpainting(engine, rec, tiny_model_dir, gallery, sampler):
    parts = edit_parts(gallery, source=SOURCE, strength=0.6, mask=MASK, mask_blur=0)
    ready, progress, failed = run(engine, rec, tiny_model_dir, sampler=sampler, steps=3, **parts)
    assert failed is None and [p.step for p in progress] == [1, 2]
    outside = MASK == 0
    assert np.array_equal(ready.image[outside], SOURCE[outside])
    assert not np.array_equal(ready.image[~outside], SOURCE[~outside])


def test_img2img_previews_stream_and_resize_modes_fit_the_request(engine, rec, tiny_model_dir, gallery):
    wide = RNG.integers(0, 256, (40, 100, 3), dtype=np.uint8)
    for mode in ("fit", "fill", "stretch"):
        job = engine.submit(request_for(tiny_model_dir, width=96, height=64, **edit_parts(
            gallery, source=wide, strength=0.5, resize=mode)))
        rec.wait_for(job)
        assert rec.of(job, ImageReady)[0].image.shape == (64, 96, 3)
        assert [p.step for p in rec.of(job, Preview)] == [1, 2]


def test_inpainting_keeps_every_pixel_outside_the_mask_with_blur_0(engine, rec, tiny_model_dir, gallery):
    outside = MASK == 0
    for kwargs in (dict(strength=1.0), dict(strength=0.5), dict(strength=0.8, mask_invert=True)):
        ready, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, mask=MASK, mask_blur=0,
                                                                    **kwargs))
        keep = ~outside if kwargs.get("mask_invert") else outside
        assert np.array_equal(ready.image[keep], SOURCE[keep])
        assert not np.array_equal(ready.image[~keep], SOURCE[~keep])
    # Blur softens the edge: pixels just outside the painted area may change, far ones stay exact.
    ready, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, mask=MASK, mask_blur=3))
    assert np.array_equal(ready.image[:4], SOURCE[:4])


def test_only_masked_works_on_a_crop_and_keeps_the_source_size(engine, rec, tiny_model_dir, gallery):
    big = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    mask[50:70, 90:110] = 255
    ready, progress, _ = run(engine, rec, tiny_model_dir, **edit_parts(
        gallery, source=big, mask=mask, mask_blur=0, only_masked=True, mask_padding=8, strength=1.0))
    assert ready.image.shape == (120, 160, 3) and len(progress) == 4
    outside = mask == 0
    assert np.array_equal(ready.image[outside], big[outside])
    assert not np.array_equal(ready.image[~outside], big[~outside])


def test_outpainting_grows_the_canvas_and_keeps_the_picture(engine, rec, tiny_model_dir, gallery):
    ready, _, _ = run(engine, rec, tiny_model_dir, width=96, height=72, **edit_parts(
        gallery, source=SOURCE, outpaint=(16, 8, 0, 8), strength=1.0))
    assert ready.image.shape == (72, 88, 3)  # 64 + 16 + 8 wide, 64 + 8 high
    assert np.array_equal(ready.image[0:64, 16:80], SOURCE)
    assert not np.array_equal(ready.image, np.pad(SOURCE, ((0, 8), (16, 8), (0, 0)), mode="edge"))  # painted


def test_a_mask_of_another_size_is_resized_with_a_notice(engine, rec, tiny_model_dir, gallery):
    small = np.zeros((32, 32), np.uint8)
    small[8:20, 10:26] = 255
    ready, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, source=SOURCE, mask=small, mask_blur=0))
    assert any("resized" in note and "32×32" in note for note in ready.notes)


def test_an_empty_mask_is_refused_before_anything_runs(engine, rec, tiny_model_dir, gallery):
    job = engine.submit(request_for(tiny_model_dir, **edit_parts(gallery, source=SOURCE,
                                                                 mask=np.zeros((64, 64), np.uint8))))
    rec.wait_for(job)
    (failed,) = rec.of(job)
    assert isinstance(failed, Failed) and failed.kind == "validation" and "mask is empty" in failed.message


def test_a_missing_source_file_is_a_clear_message(engine, rec, tiny_model_dir, gallery):
    parts = edit_parts(gallery, source=SOURCE)
    (gallery / "sources" / f"{parts['source'].image.sha256}.png").unlink()
    _, _, failed = run(engine, rec, tiny_model_dir, **parts)
    assert failed.kind == "validation" and "source image" in failed.message and "missing" in failed.message


@pytest.mark.parametrize("upscaler, scale, hires_steps, size, runs",
                         [("latent", 2.0, 0, (128, 128), 4 + 2), ("lanczos", 1.5, 6, (96, 96), 4 + 3)])
def test_hires_fix_makes_the_larger_picture_in_two_passes(engine, rec, tiny_model_dir, upscaler, scale, hires_steps,
                                                          size, runs):
    ready, progress, _ = run(engine, rec, tiny_model_dir, hires=HiresPart(scale, 0.5, upscaler, hires_steps))
    assert ready.image.shape == (size[1], size[0], 3)
    assert [p.step for p in progress] == list(range(1, runs + 1)) and {p.total for p in progress} == {runs}
    assert ready.request.width == 64 and ready.request.hires.scale == scale


def test_inpainting_checkpoint_takes_mask_and_picture_as_extra_channels(engine, rec, tiny_inpaint_dir, gallery):
    ready, progress, _ = run(engine, rec, tiny_inpaint_dir, **edit_parts(gallery, source=SOURCE, mask=MASK,
                                                                         mask_blur=0, strength=1.0))
    outside = MASK == 0
    assert len(progress) == 4 and np.array_equal(ready.image[outside], SOURCE[outside])
    plain, _, failed = run(engine, rec, tiny_inpaint_dir)  # text-to-image on an inpainting model: all masked
    assert failed is None and plain.image.shape == (64, 64, 3)


def test_sdxl_edits(engine, rec, tiny_sdxl_dir, gallery):
    ready, progress, _ = run(engine, rec, tiny_sdxl_dir, **edit_parts(gallery, source=SOURCE, strength=0.5))
    assert len(progress) == 2 and ready.image.shape == (64, 64, 3)
    ready, _, _ = run(engine, rec, tiny_sdxl_dir, **edit_parts(gallery, source=SOURCE, mask=MASK, mask_blur=0))
    assert np.array_equal(ready.image[MASK == 0], SOURCE[MASK == 0])
    ready, _, _ = run(engine, rec, tiny_sdxl_dir, hires=HiresPart(1.5, 0.5))
    assert ready.image.shape == (96, 96, 3)


def test_the_bundled_model_edits_too(engine, rec, gallery):
    ready, progress, failed = run(engine, rec, "", **edit_parts(gallery, source=SOURCE, mask=MASK, mask_blur=0,
                                                                strength=0.5))
    assert failed is None and len(progress) == 2
    assert np.array_equal(ready.image[MASK == 0], SOURCE[MASK == 0])


def test_controlnet_steers_and_weight_0_is_no_control(engine, rec, tiny_model_dir, tiny_controlnet_dir, gallery):
    plain, _, _ = run(engine, rec, tiny_model_dir)
    folder = str(tiny_controlnet_dir)
    single = str(tiny_controlnet_dir.parent / "tiny-control.safetensors")
    steered, _, failed = run(engine, rec, tiny_model_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, folder, preprocess="canny"),)))
    assert failed is None and not np.array_equal(steered.image, plain.image)
    same, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, single, preprocess="canny"),)))
    assert np.array_equal(same.image, steered.image)  # the single file holds the same ControlNet
    off, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, controls=(ControlInput(SOURCE, folder, 0.0),)))
    assert np.array_equal(off.image, plain.image)
    late, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, folder, start=0.5),)))
    early, _, _ = run(engine, rec, tiny_model_dir, **edit_parts(gallery, controls=(ControlInput(SOURCE, folder),)))
    assert not np.array_equal(late.image, early.image) and not np.array_equal(late.image, plain.image)
    # Through the hires fix: the control picture steers both passes, at each pass's size.
    both, progress, failed = run(engine, rec, tiny_model_dir, hires=HiresPart(2.0, 0.5), **edit_parts(
        gallery, controls=(ControlInput(SOURCE, folder),)))
    assert failed is None and both.image.shape == (128, 128, 3) and len(progress) == 6


def test_control_models_by_name_and_for_another_family(engine, rec, tiny_model_dir, tiny_controlnet_dir,
                                                       tiny_sdxl_controlnet_dir, tiny_sdxl_dir, gallery, darkroom_home):
    import shutil

    from engine.edit.control import control_models_dir

    shutil.copytree(tiny_controlnet_dir, control_models_dir() / "my-canny")
    ready, _, failed = run(engine, rec, tiny_model_dir, **edit_parts(gallery, controls=(ControlInput(SOURCE, "my-canny"),)))
    assert failed is None and ready is not None
    _, _, failed = run(engine, rec, tiny_model_dir, **edit_parts(gallery, controls=(ControlInput(SOURCE, "nope"),)))
    assert "Control model 'nope' was not found" in failed.message
    _, _, failed = run(engine, rec, tiny_model_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, str(tiny_sdxl_controlnet_dir)),)))
    assert failed.message == ("The control model tiny-sdxl-control is made for Stable Diffusion XL models; the model "
                              "in use is Stable Diffusion 1.x/2.x.")
    _, _, failed = run(engine, rec, tiny_sdxl_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, str(tiny_controlnet_dir)),)))
    assert "made for Stable Diffusion 1.x/2.x models" in failed.message
    ready, _, failed = run(engine, rec, tiny_sdxl_dir, **edit_parts(
        gallery, controls=(ControlInput(SOURCE, str(tiny_sdxl_controlnet_dir)),)))
    assert failed is None and ready.image.shape == (64, 64, 3)


def test_a_batch_of_edits_remakes_each_image_alone(engine, rec, tiny_model_dir, gallery):
    parts = edit_parts(gallery, source=SOURCE, mask=MASK, strength=0.7)
    job = engine.submit(request_for(tiny_model_dir, batch_count=2, **parts))
    rec.wait_for(job)
    first, second = rec.of(job, ImageReady)
    assert isinstance(rec.of(job)[0], Started) and isinstance(rec.of(job)[-1], Finished)
    job = engine.submit(second.request)
    rec.wait_for(job)
    (again,) = rec.of(job, ImageReady)
    assert np.array_equal(again.image, second.image) and not np.array_equal(first.image, second.image)


@pytest.mark.parametrize("family_dir", ["tiny_sd3_dir", "tiny_flux_dir"])
def test_flow_matching_families_refuse_edits_with_a_clear_message(engine, rec, gallery, request, family_dir):
    model = request.getfixturevalue(family_dir)
    _, _, failed = run(engine, rec, model, sampler="Euler", **edit_parts(gallery, source=SOURCE, strength=0.5))
    assert failed is not None and failed.kind == "model_unsupported" and "not available yet" in failed.message


def test_after_a_refused_edit_the_same_model_still_generates(engine, rec, gallery, tiny_flux_dir):
    _, _, failed = run(engine, rec, tiny_flux_dir, sampler="Euler", **edit_parts(gallery, source=SOURCE, strength=0.5))
    assert failed is not None
    ready, _, failed = run(engine, rec, tiny_flux_dir, sampler="Euler")
    assert failed is None and ready.image.shape == (64, 64, 3)
    # Flux dev takes the CFG scale as the network's guidance input, in the engine as in the family.
    weaker, _, _ = run(engine, rec, tiny_flux_dir, sampler="Euler", cfg=2.0)
    assert not np.array_equal(weaker.image, ready.image)
