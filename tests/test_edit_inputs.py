"""The pixel side of editing, without a model: pictures people bring become parts, the layout of canvas, mask and
crop, the canny preprocessor, and the parts' own checks."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from engine import images
from engine.edit import canny, check_pictures, default_size, edit_parts, prepare
from engine.images import ImageInputError
from engine.masks import expand_to_aspect
from engine.request import HiresPart, OutpaintPart, ValidationError, build_request

RNG = np.random.default_rng(3)


def save(tmp_path, name, im: Image.Image, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def request(root, **kw):
    return build_request(prompt="x", width=kw.pop("width", 64), height=kw.pop("height", 64),
                         **edit_parts(root, **kw)).request


def test_odd_picture_formats_become_working_sources(tmp_path):
    rgba = np.dstack([RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8), np.full((64, 80), 255, np.uint8)])
    rgba[10:20, 10:30, 3] = 0
    files = {
        "alpha.png": save(tmp_path, "alpha.png", Image.fromarray(rgba)),
        "palette.png": save(tmp_path, "palette.png", Image.fromarray(rgba[..., :3]).convert("P")),
        "16bit.png": save(tmp_path, "16bit.png", Image.fromarray((RNG.integers(0, 65535, (64, 80))).astype(np.uint16))),
        "cmyk.jpg": save(tmp_path, "cmyk.jpg", Image.fromarray(rgba[..., :3]).convert("CMYK")),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90° clockwise
    files["exif.jpg"] = save(tmp_path, "exif.jpg", Image.fromarray(rgba[..., :3]), exif=exif.tobytes())
    root = tmp_path / "gallery"
    for name, path in files.items():
        req = request(root, source=path, strength=0.5)
        inputs = prepare(req)
        assert inputs.work.shape == (64, 64, 3) and inputs.work.dtype == np.uint8, name
    assert images.read_ref(request(root, source=files["exif.jpg"]).source.image).size == (64, 80)
    # The transparent pixels of a picture are the area to repaint.
    inputs = prepare(request(root, source=files["alpha.png"], mask_from_alpha=True, mask_blur=0, width=80,
                             resize="stretch"))
    assert inputs.mask[10:20, 10:30].min() == 1.0 and inputs.mask.sum() == 200
    with pytest.raises(ImageInputError, match="no transparency"):
        request(root, source=files["cmyk.jpg"], mask_from_alpha=True)


def test_huge_pictures_are_refused(tmp_path, monkeypatch):
    path = save(tmp_path, "big.png", Image.new("RGB", (300, 300)))
    monkeypatch.setattr(images, "MAX_PIXELS", 256 * 256)
    with pytest.raises(ImageInputError, match="too large"):
        edit_parts(tmp_path / "g", source=path)
    assert not (tmp_path / "g").exists()  # nothing stored


def test_masks_follow_the_source_layout(tmp_path):
    root = tmp_path / "g"
    source = RNG.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    mask = np.zeros((40, 80), np.uint8)
    mask[:, 40:] = 255  # the right half
    for mode in ("fit", "fill", "stretch"):
        inputs = prepare(request(root, source=source, mask=mask, mask_blur=0, resize=mode))
        assert inputs.mask.shape == (64, 64) and set(np.unique(inputs.mask)) <= {0.0, 1.0}
        assert inputs.mask[:, :24].max() == 0.0 and inputs.mask[32, 40:].min() == 1.0
    # A mask of another size is fitted to the source, with a notice.
    notes = check_pictures(request(root, source=source, mask=np.full((10, 10), 255, np.uint8)))
    assert notes == ("The mask was 10×10; it was resized to the image's 80×40.",)
    with pytest.raises(ImageInputError, match="mask is empty"):
        check_pictures(request(root, source=source, mask=np.zeros((40, 80), np.uint8)))
    with pytest.raises(ImageInputError, match="mask is empty"):  # inverted, the full mask covers nothing
        check_pictures(request(root, source=source, mask=np.full((40, 80), 255, np.uint8), mask_invert=True))


def test_outpaint_and_only_masked_layouts(tmp_path):
    root = tmp_path / "g"
    source = RNG.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    inputs = prepare(request(root, source=source, outpaint=(10, 0, 6, 4), mask_blur=0))
    assert inputs.canvas.shape == (60, 70, 3) and inputs.work.shape == (64, 64, 3)
    assert inputs.mask[6:56, 10:].max() == 0.0 and inputs.mask[:, :10].min() == 1.0
    assert np.array_equal(inputs.canvas[6:56, 10:70], source)
    mask = np.zeros((50, 60), np.uint8)
    mask[20:24, 30:34] = 255
    inputs = prepare(request(root, source=source, mask=mask, mask_blur=0, only_masked=True, mask_padding=4,
                             width=128, height=64))
    left, top, right, bottom = inputs.box
    assert (right - left) == 2 * (bottom - top) and left <= 26 and right >= 38 and top <= 16 and bottom >= 28
    assert inputs.canvas.shape == (50, 60, 3) and inputs.work.shape == (64, 128, 3)
    generated = np.zeros((64, 128, 3), np.uint8)
    out = inputs.finish(generated)
    assert out.shape == (50, 60, 3) and np.array_equal(out[mask == 0], source[mask == 0])
    assert out[mask > 0].max() == 0


def test_expand_to_aspect_stays_inside_and_contains_the_box():
    assert expand_to_aspect((10, 10, 20, 20), 2, 1, (100, 100)) == (5, 10, 25, 20)
    assert expand_to_aspect((0, 0, 10, 10), 1, 2, (100, 15)) == (0, 0, 10, 15)  # the picture ends first
    assert expand_to_aspect((90, 0, 100, 10), 3, 1, (100, 100)) == (70, 0, 100, 10)


def test_default_size_keeps_the_aspect_at_the_native_pixel_count():
    assert default_size((4000, 3000), (512, 512)) == (592, 440)
    assert default_size((64, 64), (64, 64)) == (64, 64)
    assert default_size((100000, 10), (512, 512)) == (2048, 64)


def test_canny_finds_one_pixel_edges():
    square = np.zeros((40, 40, 3), np.uint8)
    square[10:30, 10:30] = 255
    edges = canny(square)
    assert edges.shape == (40, 40, 3) and edges.dtype == np.uint8 and not edges.flags.writeable
    on = edges[..., 0] > 0
    assert on[20, 8:13].sum() == 1 and on[8:13, 20].sum() == 1  # thin, one pixel across each side
    assert not on[15:25, 15:25].any() and not on[:5].any()
    assert not canny(np.full((16, 16, 3), 90, np.uint8)).any()
    faint = square // 20  # a weak step: under the thresholds
    assert not canny(faint).any() and canny(faint, 5, 10).any()
    with pytest.raises(ValueError):
        canny(square, 200, 100)


def test_part_checks():
    with pytest.raises(ValueError, match="at least one side"):
        OutpaintPart()
    with pytest.raises(ValueError, match="Outpainting left"):
        OutpaintPart(left=-1)
    with pytest.raises(ValueError, match="Hires upscale must be from 1 to 4"):
        HiresPart(scale=5)
    with pytest.raises(ValueError, match="Hires upscaler"):
        HiresPart(upscaler="esrgan")
    assert HiresPart(1.5).size(512, 768) == (768, 1152)
    ref = {"sha256": "ab" * 32, "path": "/x/a.png"}
    with pytest.raises(ValidationError) as bad:
        build_request(prompt="x", mask={"image": ref}, outpaint={"left": 8})
    assert bad.value.errors == {"mask": "Inpainting needs a source image.", "outpaint": "Outpainting needs a source image."}
    with pytest.raises(ValidationError, match="not with inpainting"):
        build_request(prompt="x", source={"image": ref}, mask={"image": ref}, hires={"scale": 2})
    with pytest.raises(ValidationError, match="at most 4096"):
        build_request(prompt="x", width=2048, height=512, hires={"scale": 2.5})


def test_arrays_from_a_mask_editor_are_parts_too(tmp_path):
    painted = np.zeros((64, 64, 4), np.uint8)
    painted[..., 3] = 255
    painted[:8, :8, 3] = 0
    parts = edit_parts(tmp_path, source=np.zeros((64, 64), np.uint8), mask=painted, mask_from_alpha=True, mask_blur=0)
    assert prepare(build_request(prompt="x", width=64, height=64, **parts).request).mask.sum() == 64
    with pytest.raises(ImageInputError, match="8-bit"):
        edit_parts(tmp_path, source=np.zeros((4, 4), np.float32))
    with pytest.raises(ValidationError, match="Denoising strength"):
        edit_parts(tmp_path, source=np.zeros((4, 4), np.uint8), strength=1.5)
