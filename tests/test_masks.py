"""Masks: prepared from paint or alpha, resized with a notice, empty refused, pasted back exactly."""

import numpy as np
import pytest

from engine.images import ImageInputError
from engine.masks import composite, mask_from_image, masked_box, outpaint_canvas, prepare_mask


def square_mask(h=32, w=32):
    m = np.zeros((h, w), np.float32)
    m[8:16, 8:20] = 1.0
    return m


def test_blur_zero_keeps_every_pixel_outside_the_mask_exact():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = prepare_mask(square_mask(), (32, 32), blur=0).mask
    out = composite(source, generated, mask)
    outside = mask == 0
    assert np.array_equal(out[outside], source[outside])
    assert np.array_equal(out[~outside], generated[~outside])


def test_blur_softens_the_edge_and_invert_swaps():
    soft = prepare_mask(square_mask(), (32, 32), blur=3).mask
    assert 0 < soft[7, 12] < 1 and soft[0, 0] < 0.01 and soft[12, 14] > 0.6
    inverted = prepare_mask(square_mask(), (32, 32), invert=True).mask
    assert inverted[0, 0] == 1.0 and inverted[12, 14] == 0.0


def test_mask_of_another_size_is_resized_with_a_notice_and_empty_is_refused():
    prepared = prepare_mask(square_mask(16, 16), (32, 32))
    assert prepared.mask.shape == (32, 32) and "resized" in prepared.notices[0]
    with pytest.raises(ImageInputError, match="empty"):
        prepare_mask(np.zeros((32, 32), np.float32), (32, 32))


def test_mask_from_alpha_and_from_paint():
    alpha = np.full((4, 4), 255, np.uint8)
    alpha[0, 0] = 0
    assert mask_from_image(np.zeros((4, 4, 3), np.uint8), alpha, use_alpha=True)[0, 0] == 1.0
    with pytest.raises(ImageInputError, match="no transparency"):
        mask_from_image(np.zeros((4, 4, 3), np.uint8), None, use_alpha=True)
    paint = np.zeros((4, 4, 3), np.uint8)
    paint[1, 1] = 255
    assert mask_from_image(paint)[1, 1] == 1.0 and mask_from_image(paint)[0, 0] == 0.0


def test_outpaint_sizes_and_mask():
    image = np.full((10, 20, 3), 9, np.uint8)
    canvas, mask = outpaint_canvas(image, 8, 0, 16, 4)
    assert canvas.shape == (30, 28, 3) and mask.shape == (30, 28)
    assert mask[16:26, 8:28].sum() == 0 and mask.sum() == 30 * 28 - 200
    assert np.array_equal(canvas[16:26, 8:28], image)
    for bad in [(0, 0, 0, 0), (-1, 0, 0, 0), (5000, 0, 0, 0)]:
        with pytest.raises(ImageInputError):
            outpaint_canvas(image, *bad)


def test_only_masked_box_is_padded_clipped_and_a_multiple_of_8():
    left, top, right, bottom = masked_box(square_mask(), padding=4)
    assert left <= 4 and top <= 4 and right >= 24 and bottom >= 20
    assert (right - left) % 8 == 0 and (bottom - top) % 8 == 0
    assert 0 <= left and 0 <= top and right <= 32 and bottom <= 32
