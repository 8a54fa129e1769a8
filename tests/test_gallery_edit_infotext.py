"""The A1111 infotext keys of picture edits: written as A1111 and sd-webui-controlnet write them, read back (by
Darkroom's reader, A1111's rules and sd-parsers) without trusting them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gallery_fixtures import make_ready, make_request
from tests.test_gallery_infotext import a1111_parse

from engine.gallery import Gallery
from engine.gallery.infotext import format_infotext
from engine.gallery.metadata import parse_a1111, read_parameters
from engine.request import HiresPart

REF = {"sha256": "ab" * 32, "path": "sources/ab.png"}
PICTURES = "the pictures must be chosen again"


def params_line(text: str) -> str:
    return text.strip().split("\n")[-1]


def test_img2img_writes_denoising_strength_and_resize_mode():
    text = format_infotext(make_request(source={"image": REF, "strength": 0.4, "resize": "fill"}))
    assert "Denoising strength: 0.4, Resize mode: Crop and resize" in params_line(text)
    read = parse_a1111(text)
    assert read.edit == {"strength": 0.4, "resize": "fill"} and read.parts == {}
    assert any(PICTURES in w for w in read.warnings)
    assert not any("ignored" in w for w in read.warnings)
    assert read.build().request.source is None  # a picture never comes back from infotext


def test_inpainting_keys_as_a1111_writes_them():
    req = make_request(source={"image": REF, "strength": 0.8},
                       mask={"image": REF, "blur": 6, "invert": True, "only_masked": True, "padding": 12})
    line = params_line(format_infotext(req))
    assert ("Denoising strength: 0.8, Mask blur: 6, Mask mode: Inpaint not masked, Inpaint area: Only masked, "
            "Masked area padding: 12") in line
    assert "Resize mode" not in line  # only-masked works on the source at its own size
    assert parse_a1111(format_infotext(req)).edit == {
        "strength": 0.8, "mask_blur": 6, "mask_invert": True, "only_masked": True, "mask_padding": 12}
    plain = make_request(source={"image": REF}, mask={"image": REF})
    line = params_line(format_infotext(plain))
    assert "Mask blur: 4" in line and "Mask mode" not in line and "Inpaint area" not in line


def test_outpainting_has_its_own_quoted_key():
    text = format_infotext(make_request(source={"image": REF}, outpaint={"left": 16, "down": 8}))
    assert 'Outpaint: "16,0,0,8"' in text
    assert parse_a1111(text).edit["outpaint"] == (16, 0, 0, 8)
    assert a1111_parse(text)["Outpaint"] == "16,0,0,8"


@pytest.mark.parametrize("upscaler, label", [("latent", "Latent"), ("lanczos", "Lanczos")])
def test_hires_fix_comes_back_as_a_part(upscaler, label):
    hires = HiresPart(1.5, 0.45, upscaler, 10)
    req = make_request(width=512, height=512, hires=hires)
    text = format_infotext(req)
    assert f"Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 10, Hires upscaler: {label}" in text
    read = parse_a1111(text)
    assert read.parts == {"hires": hires} and read.edit == {} and read.warnings == ()
    assert read.build().request.hires == hires
    no_steps = format_infotext(make_request(hires=HiresPart(2.0, 0.5)))
    assert "Hires steps" not in no_steps and parse_a1111(no_steps).parts["hires"] == HiresPart(2.0, 0.5)


def test_img2img_with_a_hires_fix_keeps_both_strengths():
    req = make_request(width=512, height=512, source={"image": REF, "strength": 0.3}, hires=HiresPart(2.0, 0.6))
    text = format_infotext(req)
    assert "Denoising strength: 0.3" in text and "Hires denoising strength: 0.6" in text
    read = parse_a1111(text)
    assert read.edit == {"strength": 0.3, "resize": "fit"} and read.parts["hires"].strength == 0.6


def test_controlnet_units_in_sd_webui_controlnet_format():
    req = make_request(controls=[
        {"model": "/home/me/models/canny, v1:sd15.safetensors", "image": REF, "weight": 0.5, "start": 0.1, "end": 0.9},
        {"model": "depth", "image": REF}])
    text = format_infotext(req)
    assert ('ControlNet 0: "Module: none, Model: canny_ v1_sd15, Weight: 0.5, Guidance Start: 0.1, '
            'Guidance End: 0.9"') in text
    assert 'ControlNet 1: "Module: none, Model: depth, Weight: 1, Guidance Start: 0, Guidance End: 1"' in text
    assert "/home/me" not in text
    # sd-webui-controlnet's own reader (scripts/infotext.py parse_unit): items split on "," then ": ".
    unit = dict(item.strip().split(": ") for item in a1111_parse(text)["ControlNet 0"].split(","))
    assert unit == {"Module": "none", "Model": "canny_ v1_sd15", "Weight": "0.5", "Guidance Start": "0.1",
                    "Guidance End": "0.9"}
    read = parse_a1111(text)
    assert read.edit["controls"] == (
        {"model": "canny_ v1_sd15", "weight": 0.5, "start": 0.1, "end": 0.9, "preprocess": "none"},
        {"model": "depth", "weight": 1.0, "start": 0.0, "end": 1.0, "preprocess": "none"})


def test_real_a1111_infotexts_are_read():
    hires = ("a knight\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, "
             "Model: anything-v5, Denoising strength: 0.5, Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+, "
             "Version: v1.9.4")
    read = parse_a1111(hires)
    assert read.parts == {"hires": HiresPart(2.0, 0.5, "lanczos")} and read.edit == {}
    assert any("R-ESRGAN 4x+" in w and "Lanczos" in w for w in read.warnings)
    inpaint = ("a door\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 2, Size: 512x512, Denoising strength: 0.75, "
               "Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Version: v1.10.1")
    assert parse_a1111(inpaint).edit == {"strength": 0.75, "mask_blur": 4, "only_masked": True, "mask_padding": 32}
    control = ('a fox\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 512x512, ControlNet 0: "Module: canny, '
               "Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: Crop and Resize, Low Vram: False, "
               "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, "
               'Pixel Perfect: False, Control Mode: Balanced", ControlNet 1: "Module: openpose_full, '
               'Model: control_v11p_sd15_openpose [cab727d4], Weight: 0.8, Guidance Start: 0.2, Guidance End: 0.7"')
    read = parse_a1111(control)
    assert read.edit["controls"] == (
        {"model": "control_v11p_sd15_canny", "weight": 1.0, "start": 0.0, "end": 1.0, "preprocess": "canny"},
        {"model": "control_v11p_sd15_openpose", "weight": 0.8, "start": 0.2, "end": 0.7, "preprocess": "none"})
    assert any("openpose_full" in w for w in read.warnings)


def test_bad_values_become_warnings_and_the_rest_is_read():
    text = ("x\nSteps: 20, Seed: 4, Size: 2048x2048, CFG scale: 7, Denoising strength: 7, Mask blur: -3, "
            "Masked area padding: 1e309, Mask mode: banana, Inpaint area: 1, Resize mode: zoom, "
            'Outpaint: "1,2", ControlNet 0: "garbage", ControlNet 1: "Model: m, Weight: nan, Guidance Start: 0.9, '
            'Guidance End: 0.1", Hires upscale: 4, Hires upscaler: Latent')
    read = parse_a1111(text)
    assert read.fields["steps"] == 20 and read.fields["seed"] == 4
    assert read.edit == {} and read.parts == {}
    joined = " ".join(read.warnings)
    for expected in ("denoising strength '7'", "Mask blur", "masked area padding", "mask mode",
                     "inpaint area", "resize mode", "outpainting", "ControlNet 0 unit", "weight",
                     "ControlNet 1 unit", "4096"):
        assert expected in joined, expected
    for bad_hires in ("Hires upscale: 9", "Hires upscale: nan", "Hires upscaler: Latent"):
        read = parse_a1111(f"x\nSteps: 20, Seed: 4, CFG scale: 7, {bad_hires}")
        assert read.parts == {} and read.warnings


def test_too_many_control_units_are_bounded():
    units = ", ".join(f'ControlNet {i}: "Model: m{i}"' for i in range(40))
    read = parse_a1111(f"x\nSteps: 20, Seed: 4, CFG scale: 7, {units}")
    assert len(read.edit["controls"]) == 8 and any("first 8" in w for w in read.warnings)


EDIT_KEYS = ["Denoising strength", "Hires denoising strength", "Resize mode", "Mask blur", "Mask mode", "Inpaint area",
             "Masked area padding", "Outpaint", "Hires upscale", "Hires upscaler", "Hires steps", "ControlNet 0"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(EDIT_KEYS), st.text(max_size=60), max_size=len(EDIT_KEYS)))
def test_fuzz_edit_keys_never_raise(values):
    import json

    line = ", ".join(f"{k}: {json.dumps(v)}" for k, v in values.items())
    read = parse_a1111(f"x\nSteps: 20, Seed: 4, CFG scale: 7, {line}")
    read.build()  # whatever was read builds a request
    json.dumps(read.to_json())


def test_a_saved_png_round_trips_and_sd_parsers_reads_the_keys(tmp_path):
    import sd_parsers

    req = make_request(width=512, height=512, source={"image": REF, "strength": 0.35},
                       mask={"image": REF, "blur": 5, "only_masked": True, "padding": 16})
    path = tmp_path / "edit.png"
    path.write_bytes(Gallery.encode(make_ready(req)))
    info = sd_parsers.ParserManager().parse(str(path))
    assert (info.metadata["Denoising strength"], info.metadata["Mask blur"]) == ("0.35", "5")
    assert (info.metadata["Inpaint area"], info.metadata["Masked area padding"]) == ("Only masked", "16")
    hires = make_request(width=512, height=512, hires=HiresPart(1.5, 0.4, "lanczos"))
    path.write_bytes(Gallery.encode(make_ready(hires)))
    info = sd_parsers.ParserManager().parse(str(path))
    assert (info.metadata["Hires upscale"], info.metadata["Hires upscaler"]) == ("1.5", "Lanczos")
    # Darkroom's own chunk wins and carries the whole recipe, pictures by reference.
    read = read_parameters(path)
    assert read.source == "darkroom" and read.parts == {"hires": HiresPart(1.5, 0.4, "lanczos")}
