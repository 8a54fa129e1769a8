import numpy as np
import pytest

from engine.train.attributes import (colour_fidelity, colour_pairs, colour_targets, hue_error, shape_classes,
                                     shape_separation, srgb_to_lab)


def _blob(rgb, shape="square", size=32):
    im = np.full((size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    if shape == "square":
        m = (abs(yy - c) < 10) & (abs(xx - c) < 10)
    elif shape == "circle":
        m = (yy - c) ** 2 + (xx - c) ** 2 < 100
    elif shape == "face":
        m = (yy - c) ** 2 + (xx - c) ** 2 < 144
    else:  # heart: a triangle pointing down
        m = (yy > 6) & (yy < 26) & (abs(xx - c) < (26 - yy) * 0.8)
    im[m] = rgb
    if shape == "face":
        im[12:14, 11:13] = im[12:14, 19:21] = 40  # eyes
        im[20:21, 12:20] = 40  # mouth
    return im


RED, GREEN, BLUE = (220, 30, 30), (40, 180, 40), (40, 60, 220)


def _data():
    images = np.stack([_blob(RED, "heart"), _blob(GREEN, "heart"), _blob(BLUE, "heart"),
                       _blob(RED, "circle"), _blob(BLUE, "square"), _blob((240, 200, 40), "face")])
    captions = [["red heart"], ["green heart"], ["blue heart"], ["red circle", "circle"], ["blue square"],
                ["grinning face"]]
    return images, captions


def test_lab_of_reference_colours():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    assert lab[0] == pytest.approx([100, 0, 0], abs=0.5)
    assert lab[1] == pytest.approx([0, 0, 0], abs=0.5)
    assert lab[2] == pytest.approx([53.2, 80.1, 67.2], abs=0.5)
    assert hue_error(lab[2], lab[2]) == 0
    assert hue_error([50, 10, 0], [50, -10, 0]) == pytest.approx(180)


def test_colour_targets_are_the_foreground_colour_scaled_to_about_one():
    images, _ = _data()
    t = colour_targets(images)
    assert t.shape == (6, 3) and t.dtype == np.float32
    red, green, blue = t[0], t[1], t[2]
    assert red[1] > 1.0 and green[1] < -1.0  # a*: red against green
    assert blue[2] < -1.0 and red[2] > 0.5  # b*: blue against red; the white background is left out
    assert np.allclose(t[0], t[3], atol=0.05)  # a red heart and a red circle: the same colour


def test_colour_pairs_keep_objects_with_several_colours():
    _, captions = _data()
    pairs = colour_pairs(captions)
    assert list(pairs) == ["heart"]  # one red circle and one blue square are no comparison
    assert pairs["heart"] == {"blue": (2, "blue heart"), "green": (1, "green heart"), "red": (0, "red heart")}


def test_colour_fidelity_passes_the_right_colour_and_fails_a_swapped_one():
    images, captions = _data()
    by_caption = {c[0]: images[i] for i, c in enumerate(captions)}

    def faithful(prompts, seeds):
        return np.stack([by_caption[p] for p in prompts])

    def swapped(prompts, seeds):  # always draws the green heart
        return np.stack([images[1] for _ in prompts])

    good = colour_fidelity(faithful, images, captions, seeds=(0, 1))
    assert good["within_tolerance"] == 1.0 and good["pictures"] == 6
    assert good["chance"] == pytest.approx(1 / 3)
    assert good["median_hue_error_deg"] == 0
    bad = colour_fidelity(swapped, images, captions, seeds=(0,))
    assert bad["per_colour"] == {"blue": 0.0, "green": 1.0, "red": 0.0}


def test_shape_separation_is_colour_blind():
    images, captions = _data()
    assert shape_classes(captions) == {"heart": [0, 1, 2], "circle": [3], "square": [4], "face": [5]}
    shape_of = {"heart": "heart", "circle": "circle", "square": "square", "face": "face"}

    def recoloured(prompts, seeds):  # the right shape in an unrelated colour
        return np.stack([_blob((120, 60, 160), shape_of[p.split()[-1]]) for p in prompts])

    def all_squares(prompts, seeds):
        return np.stack([_blob((120, 60, 160), "square") for _ in prompts])

    assert shape_separation(recoloured, images, captions, per_class=2, seeds=(0,))["accuracy"] == 1.0
    wrong = shape_separation(all_squares, images, captions, per_class=2, seeds=(0,))
    assert wrong["per_class"]["square"] == 1.0 and wrong["accuracy"] < 0.5
