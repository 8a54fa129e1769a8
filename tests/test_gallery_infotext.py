"""A1111 infotext: what Darkroom writes is read right by A1111's own parsing rules, and reading never fails."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gallery_fixtures import make_request

from engine import samplers
from engine.gallery.infotext import format_infotext, parse_infotext, parse_params_line, quote
from engine.samplers import SAMPLER_NAMES, from_a1111 as from_a1111_sampler

# -- AUTOMATIC1111's reader, as in modules/infotext_utils.py (parse_generation_parameters, trimmed to the fields) --
_re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_re_imagesize = re.compile(r"^(\d+)x(\d+)$")


def a1111_parse(x: str) -> dict:
    res = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False
    *lines, lastline = x.strip().split("\n")
    if len(_re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    for k, v in _re_param.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            try:
                v = json.loads(v)
            except Exception:
                pass
        m = _re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"] = m.group(1)
            res[f"{k}-2"] = m.group(2)
        else:
            res[k] = v
    if "Schedule type" not in res:
        res["Schedule type"] = "Automatic"
    return res


def test_format_matches_the_documented_example():
    req = make_request(prompt="a cat", negative_prompt="ugly", seed=965400086, steps=20, cfg=7.0,
                       width=512, height=512, sampler="DPM++ 2M Karras")
    text = format_infotext(req, "name", "45dee52b", "darkroom 0.1.0")
    assert text == (
        "a cat\nNegative prompt: ugly\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, "
        "Model hash: 45dee52b, Model: name, Version: darkroom 0.1.0"
    )


def test_empty_negative_prompt_line_is_left_out():
    text = format_infotext(make_request(negative_prompt=""))
    assert "Negative prompt" not in text
    assert len(text.split("\n")) == 2


@pytest.mark.parametrize("scheduler", SAMPLER_NAMES)
def test_a1111_reader_gets_prompt_seed_steps_cfg_sampler_size(scheduler):
    req = make_request(prompt="portrait of a knight, (armour:1.2), dramatic light\nsecond line: more",
                       negative_prompt="blurry, lowres", seed=4294967295, steps=37, cfg=6.5, width=640,
                       height=832, sampler=scheduler)
    res = a1111_parse(format_infotext(req, "my model", "abc123", "darkroom 0.1.0"))
    assert res["Prompt"] == req.prompt
    assert res["Negative prompt"] == req.negative_prompt
    assert res["Steps"] == "37"
    assert res["Seed"] == "4294967295"
    assert float(res["CFG scale"]) == 6.5
    assert (res["Size-1"], res["Size-2"]) == ("640", "832")
    row = samplers.get(scheduler)
    assert (res["Sampler"], res["Schedule type"]) == (row.a1111_name, row.schedule)
    assert res["Model"] == "my model"
    assert res["Model hash"] == "abc123"
    # and back to the same Darkroom sampler
    assert from_a1111_sampler(res["Sampler"], res["Schedule type"]) == (scheduler, None)


def test_values_with_commas_and_colons_are_json_quoted_and_read_back():
    req = make_request()
    text = format_infotext(req, model_name="model, v2: final")
    assert 'Model: "model, v2: final"' in text
    assert a1111_parse(text)["Model"] == "model, v2: final"
    assert parse_infotext(text).params["Model"] == "model, v2: final"


def test_a_model_path_is_written_as_its_name_only():
    req = make_request(model="/home/someone/models/dreamy-v3.safetensors")
    text = format_infotext(req)
    assert "Model: dreamy-v3" in text
    assert "/home/someone" not in text


@pytest.mark.parametrize(
    "sampler, schedule, expected",
    [
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("DPM++ 2M", "Automatic", "DPM++ 2M Karras"),  # A1111 1.9+ default for DPM++ 2M
        ("DPM++ 2M", None, "DPM++ 2M"),  # before 1.9 the schedule was in the name
        ("DPM++ 2M", "Uniform", "DPM++ 2M"),
        ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
        ("DPM++ 2M SDE", "Karras", "DPM++ 2M SDE Karras"),
        ("Euler a", "Automatic", "Euler a"),
        ("Euler a", None, "Euler a"),
        ("Euler", "Automatic", "Euler"),
        ("UniPC", "Automatic", "UniPC"),
        ("DDIM", None, "DDIM"),
    ],
)
def test_a1111_sampler_names_map_to_darkroom(sampler, schedule, expected):
    assert from_a1111_sampler(sampler, schedule) == (expected, None)


def test_unknown_or_approximate_samplers_come_with_a_warning():
    name, warning = from_a1111_sampler("Restart", "Automatic")
    assert name is None and "not available" in warning
    name, warning = from_a1111_sampler("DPM++ 2M", "Exponential")
    assert name == "DPM++ 2M" and "Exponential" in warning
    name, warning = from_a1111_sampler("DPM++ 2M SDE", "Exponential")
    assert name == "DPM++ 2M SDE Karras" and warning


def test_parse_real_a1111_infotext():
    text = (
        "masterpiece, best quality, 1girl, (colorful),(finely detailed beautiful eyes and detailed face)\n"
        "Negative prompt: EasyNegative, extra fingers,fewer fingers,\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 2407252201, Size: 512x768, "
        'Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.5, Hires upscale: 2, '
        'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.4'
    )
    info = parse_infotext(text)
    assert info.prompt.startswith("masterpiece") and info.prompt.endswith("detailed face)")
    assert info.negative_prompt == "EasyNegative, extra fingers,fewer fingers,"
    assert info.params["Steps"] == "28"
    assert info.params["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert info.params["Version"] == "v1.9.4"
    assert a1111_parse(text)["Lora hashes"] == info.params["Lora hashes"]


def test_prompt_only_text_has_no_params():
    info = parse_infotext("just a prompt, with commas: and colons")
    assert info.prompt == "just a prompt, with commas: and colons"
    assert info.params == {}


def test_quote_leaves_plain_values_alone():
    assert quote("Euler a") == "Euler a"
    assert quote("a,b") == '"a,b"'
    assert quote('"x') == '"\\"x"'


def test_long_hostile_line_parses_in_linear_time():
    # A line a regular expression with backtracking would choke on: long runs without colons or commas.
    hostile = ("a" * 200_000 + " ") * 1 + "x" * 50_000 + ":" + '"' + "\\" * 10_001
    assert isinstance(parse_params_line(hostile), list)
    assert parse_infotext(hostile + "\n" + "Steps: 1, " * 30_000) is not None


# -- fuzzing: any text is read without raising, and what Darkroom writes always reads back -----------------------
INFOTEXT_ALPHABET = st.sampled_from(list('abc XYZ0123456789,:"\\\n\r-/_{}[]é✓\x00\t'))


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(INFOTEXT_ALPHABET, max_size=300) | st.text(max_size=200))
def test_fuzz_parse_infotext_never_raises(text):
    info = parse_infotext(text)
    assert isinstance(info.prompt, str) and isinstance(info.negative_prompt, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.params.items())


SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=80).map(str.strip)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    prompt=SAFE_TEXT.filter(lambda s: not s.startswith("Negative prompt:")),
    negative=SAFE_TEXT,
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 150),
    cfg=st.floats(0, 30, allow_nan=False),
    scheduler=st.sampled_from(SAMPLER_NAMES),
    model=SAFE_TEXT,
)
def test_fuzz_round_trip_through_infotext(prompt, negative, seed, steps, cfg, scheduler, model):
    from engine.gallery.metadata import parse_a1111

    req = make_request(prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, cfg=cfg, sampler=scheduler)
    text = format_infotext(req, model_name=model)
    params = parse_a1111(text)
    f = params.fields
    assert f["seed"] == seed and f["steps"] == steps and f["cfg"] == cfg and f["sampler"] == scheduler
    assert (f["width"], f["height"]) == (req.width, req.height)
    if "\n" not in prompt and not _looks_like_params(prompt):
        assert f["prompt"] == prompt
    if "\n" not in negative:
        assert f.get("negative_prompt", "") == negative
    assert params.model_name == model.strip() or not model.strip()


def _looks_like_params(line: str) -> bool:
    return len(parse_params_line(line)) >= 3


def test_a_third_party_a1111_reader_agrees(tmp_path):
    """sd-parsers, an independent reader of A1111 images, reads Darkroom's PNGs."""
    import sd_parsers

    from engine.gallery import Gallery
    from tests.gallery_fixtures import make_ready

    req = make_request(prompt="portrait of a knight, (armour:1.2)", negative_prompt="blurry, lowres", seed=3735928559,
                       steps=33, cfg=6.5, width=640, height=832, sampler="DPM++ 2M Karras")
    path = tmp_path / "knight.png"
    path.write_bytes(Gallery.encode(make_ready(req)))
    info = sd_parsers.ParserManager().parse(str(path))
    sampler = info.samplers[0]
    assert sampler.name == "DPM++ 2M" and sampler.parameters["scheduler"] == "Karras"
    assert (sampler.parameters["seed"], sampler.parameters["steps"], sampler.parameters["cfg_scale"]) == ("3735928559", "33", "6.5")
    assert sampler.prompts[0].value == req.prompt and sampler.negative_prompts[0].value == req.negative_prompt
    assert info.metadata["Size"] == "640x832"
