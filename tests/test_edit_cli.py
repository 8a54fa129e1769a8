"""``darkroom generate`` with pictures: img2img, inpainting, outpainting, hires fix and ControlNet on the tiny
random-weight models, the saved recipe naming its pictures by hash, and bad input as one line before any model
loads."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from engine import cli
from engine.cli import main
from engine.gallery.metadata import read_parameters, read_png_text

RNG = np.random.default_rng(11)
FAST = ["--steps", "2", "--seed", "5", "--quiet", "--device", "cpu"]


@pytest.fixture
def pictures(tmp_path):
    """A 64×64 source, a mask painting a box, an RGBA picture with a transparent hole, an empty mask, a non-image."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "source.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 20:52] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "empty.png")
    rgba = np.dstack([RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), np.full((64, 64), 255, np.uint8)])
    rgba[20:30, 20:30, 3] = 0
    Image.fromarray(rgba).save(folder / "hole.png")
    Image.fromarray(RNG.integers(0, 256, (50, 100, 3), dtype=np.uint8)).save(folder / "wide.png")
    (folder / "notes.png").write_text("not a picture")
    return folder


def generate(model, out, *options):
    """Run generate in-process; return (exit code, the saved PNG paths)."""
    code = main(["generate", "a red apple", "--model", str(model), *FAST, "--out", str(out), *options])
    return code, sorted(out.glob("*.png"))


def recipe(path):
    return json.loads(read_png_text(path).text["darkroom"])["request"]


def infotext(path):
    return read_png_text(path).text["parameters"]


def assert_stored(out, ref):
    """``ref`` (from a saved recipe) names a picture stored under ``out`` by its content's hash, relatively."""
    assert ref["path"] == f"sources/{ref['sha256']}.png"
    assert hashlib.sha256((out / ref["path"]).read_bytes()).hexdigest() == ref["sha256"]


# -- happy paths ---------------------------------------------------------------------------------------------------
def test_img2img_saves_a_recipe_naming_the_source_by_hash(tiny_model_dir, pictures, tmp_path):
    from engine.edit import resolve_recipe

    out = tmp_path / "out"
    code, (saved,) = generate(tiny_model_dir, out, "--init-image", str(pictures / "source.png"), "--strength", "0.5",
                              "--resize", "fill")
    assert code == 0
    data = recipe(saved)
    assert data["source"]["strength"] == 0.5 and data["source"]["resize"] == "fill"
    assert_stored(out, data["source"]["image"])
    assert str(tmp_path) not in read_png_text(saved).text["darkroom"]  # no folder of the user's travels
    assert "Denoising strength: 0.5" in infotext(saved) and "Resize mode: Crop and resize" in infotext(saved)
    # "Use all parameters" finds the picture again under the folder the image is in.
    request = resolve_recipe(read_parameters(saved).build().request, out)
    assert request.source.image.sha256 == data["source"]["image"]["sha256"]


def test_inpainting_options_reach_the_recipe_and_the_infotext(tiny_model_dir, pictures, tmp_path, capsys):
    out = tmp_path / "out"
    code, (saved,) = generate(tiny_model_dir, out, "--init-image", str(pictures / "source.png"), "--mask",
                              str(pictures / "mask.png"), "--mask-blur", "0", "--invert-mask", "--only-masked",
                              "--mask-padding", "8")
    assert code == 0
    data = recipe(saved)
    assert {k: data["mask"][k] for k in ("blur", "invert", "only_masked", "padding")} == {
        "blur": 0, "invert": True, "only_masked": True, "padding": 8}
    assert_stored(out, data["mask"]["image"])
    assert_stored(out, data["source"]["image"])
    text = infotext(saved)
    for key in ("Mask blur: 0", "Mask mode: Inpaint not masked", "Inpaint area: Only masked", "Masked area padding: 8"):
        assert key in text
    # Inverted: the painted box is kept exactly.
    with Image.open(saved) as im, Image.open(pictures / "source.png") as src:
        assert np.array_equal(np.asarray(im)[16:40, 20:52], np.asarray(src)[16:40, 20:52])


def test_mask_from_the_source_transparency_and_outpainting(tiny_model_dir, pictures, tmp_path):
    out = tmp_path / "out"
    code, (saved,) = generate(tiny_model_dir, out, "--init-image", str(pictures / "hole.png"), "--mask-from-alpha",
                              "--outpaint", "16,0,0,8", "--strength", "1")
    assert code == 0
    with Image.open(saved) as im:
        assert im.size == (80, 72)  # the source grown by the outpainted sides
    data = recipe(saved)
    assert data["outpaint"] == {"left": 16, "right": 0, "up": 0, "down": 8}
    assert_stored(out, data["mask"]["image"])
    assert 'Outpaint: "16,0,0,8"' in infotext(saved)


def test_hires_fix_without_a_source(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, (saved,) = generate(tiny_model_dir, out, "--size", "64x64", "--hires", "1.5", "--hires-strength", "0.4",
                              "--hires-upscaler", "lanczos", "--hires-steps", "2")
    assert code == 0
    with Image.open(saved) as im:
        assert im.size == (96, 96)
    assert recipe(saved)["hires"] == {"scale": 1.5, "strength": 0.4, "upscaler": "lanczos", "steps": 2}
    text = infotext(saved)
    assert "Denoising strength: 0.4, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos" in text
    assert read_parameters(saved).parts == {"hires": read_parameters(saved).build().request.hires}


def test_controlnet_with_canny(tiny_model_dir, tiny_controlnet_dir, pictures, tmp_path):
    out = tmp_path / "out"
    code, (saved,) = generate(tiny_model_dir, out, "--control", str(pictures / "source.png"), "--control-model",
                              str(tiny_controlnet_dir), "--control-weight", "0.5", "--control-end", "0.8",
                              "--control-preprocess", "canny")
    assert code == 0
    (control,) = recipe(saved)["controls"]
    assert (control["weight"], control["start"], control["end"]) == (0.5, 0.0, 0.8)
    assert_stored(out, control["image"])
    with Image.open(out / control["image"]["path"]) as edges:  # stored preprocessed: black and white edges
        assert set(np.unique(np.asarray(edges))) <= {0, 255}
    assert ('ControlNet 0: "Module: none, Model: tiny-control, Weight: 0.5, Guidance Start: 0, Guidance End: 0.8"'
            in infotext(saved))


def test_pictures_go_into_the_gallery_folder_by_default(tiny_model_dir, pictures, darkroom_home, capsys):
    code = main(["generate", "a red apple", "--model", str(tiny_model_dir), *FAST, "--init-image",
                 str(pictures / "source.png")])
    assert code == 0
    saved = capsys.readouterr().out.strip()
    root = darkroom_home / "gallery"
    assert saved.startswith(str(root))
    assert_stored(root, recipe(saved)["source"]["image"])


@pytest.fixture
def planned(monkeypatch):
    """Stops generate just before the engine would start; returns what it would have run."""
    seen = []
    monkeypatch.setattr(cli, "run_generation", lambda request, args: seen.append(request) or 0)
    return seen


def test_the_size_follows_the_source_unless_given(tiny_model_dir, pictures, tmp_path, planned):
    from engine.edit import default_size

    base = ["generate", "x", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--init-image",
            str(pictures / "wide.png")]
    assert main(base) == 0 and main([*base, "--size", "64x64"]) == 0
    assert (planned[0].width, planned[0].height) == default_size((100, 50), (64, 64)) != (64, 64)
    assert (planned[1].width, planned[1].height) == (64, 64)


def test_control_options_repeat_in_step_or_apply_to_all(tiny_controlnet_dir, pictures, tmp_path, planned):
    src, model = str(pictures / "source.png"), str(tiny_controlnet_dir)
    assert main(["generate", "x", "--size", "64x64", "--out", str(tmp_path / "o"), "--control", src, "--control",
                 src, "--control-model", model, "--control-weight", "0.3", "--control-weight", "0.6",
                 "--control-start", "0.2"]) == 0
    controls = planned[0].controls
    assert [(c.weight, c.start, c.model) for c in controls] == [(0.3, 0.2, model), (0.6, 0.2, model)]


# -- bad input: one line, before the model loads, nothing stored -----------------------------------------------------
BAD = [
    (["--init-image", "{in}/missing.png"], 2, "does not exist"),
    (["--init-image", "{in}/notes.png"], 2, "not an image"),
    (["--init-image", "{in}/source.png", "--strength", "1.5"], 2, "Denoising strength must be from 0 to 1"),
    (["--init-image", "{in}/source.png", "--strength", "lots"], 2, "--strength must be a number"),
    (["--init-image", "{in}/source.png", "--resize", "sideways"], 2, "Resize mode must be one of"),
    (["--strength", "0.5"], 2, "--strength needs --init-image"),
    (["--mask", "{in}/mask.png"], 2, "--mask needs --init-image"),
    (["--outpaint", "8,8,8,8"], 2, "--outpaint needs --init-image"),
    (["--init-image", "{in}/source.png", "--outpaint", "8,8"], 2, "left,right,up,down"),
    (["--init-image", "{in}/source.png", "--outpaint", "0,0,0,0"], 2, "at least one side"),
    (["--init-image", "{in}/source.png", "--mask", "{in}/mask.png", "--mask-blur", "999"], 2, "Mask blur"),
    (["--init-image", "{in}/source.png", "--mask-blur", "3"], 2, "--mask-blur needs --mask"),
    (["--init-image", "{in}/source.png", "--mask-from-alpha"], 2, "no transparency"),
    (["--init-image", "{in}/source.png", "--mask", "{in}/empty.png"], 2, "mask is empty"),
    (["--init-image", "{in}/source.png", "--mask", "{in}/mask.png", "--hires", "2"], 2, "Hires fix works on whole"),
    (["--hires", "5"], 2, "Hires upscale must be from 1 to 4"),
    (["--hires", "2", "--hires-upscaler", "esrgan"], 2, "Hires upscaler must be one of"),
    (["--hires-strength", "0.5"], 2, "--hires-strength needs --hires"),
    (["--control", "{in}/source.png"], 2, "--control needs --control-model"),
    (["--control-model", "x"], 2, "--control-model needs --control"),
    (["--control", "{in}/source.png", "--control-model", "{in}/nowhere"], 1, "Control model"),
    (["--control", "{in}/source.png", "--control", "{in}/source.png", "--control-model", "a", "--control-model", "b",
      "--control-model", "c"], 2, "once per --control"),
    (["--control", "{in}/source.png", "--control-model", "m", "--control-preprocess", "sobel"], 2, "none or canny"),
    (["--control", "{in}/source.png", "--control-model", "m", "--control-weight", "3"], 2, "Control weight"),
]


@pytest.mark.parametrize("options, code, message", BAD, ids=[" ".join(b[0])[:60] for b in BAD])
def test_bad_input_is_one_line_before_the_model_loads(options, code, message, pictures, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setattr(cli, "run_generation", lambda *a: pytest.fail("the engine started"))
    out = tmp_path / "out"
    args = [o.replace("{in}", str(pictures)) for o in options]
    assert main(["generate", "x", "--size", "64x64", "--out", str(out), *args]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("darkroom: error: ") and message in err, err
    if "empty" not in message:  # an empty mask is found once stored; anything else before
        assert not (out / "sources").exists()
