"""Reading parameters from any PNG: Darkroom's own, A1111's, Fooocus', ComfyUI's, InvokeAI's; and hostile files."""

from __future__ import annotations

import dataclasses

import json
import math
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gallery_fixtures import comfy_graph, invoke_metadata, make_ready, make_request, png_with_text, raw_chunk

from engine.gallery import Gallery
from engine.gallery.infotext import format_infotext
from engine.gallery.metadata import (
    MAX_PROMPT_CHARS,
    MetadataError,
    darkroom_text_chunks,
    parameters_from_text,
    parse_a1111,
    parse_comfyui,
    parse_darkroom,
    parse_invokeai,
    read_parameters,
    read_png_text,
)
from engine.request import REQUEST_FORMAT_VERSION, build_request


def test_darkroom_chunk_restores_the_exact_request():
    req = make_request(prompt="multi\nline  prompt ✓ 日本語", negative_prompt="  spaced  ", cfg=7.123456789,
                       width=1024, height=576, sampler="Euler a", model="/models/x.safetensors", seed=0)
    data = Gallery.encode(make_ready(req))
    params = read_parameters(data)
    assert params.source == "darkroom"
    # The model is recorded by name and hash: a shared image does not reveal the user's folders.
    assert params.build().request == dataclasses.replace(req, model="tiny-sd")
    assert params.model_name == "tiny-sd" and params.model_hash == "0123abcd"
    assert params.warnings == ()
    assert b"/models/" not in data


def test_recipe_parts_round_trip_and_images_are_referenced_not_embedded():
    ref = {"sha256": "ab" * 32, "path": "sources/ab.png"}
    req = make_request(prompt="edit", source={"image": ref, "strength": 0.4, "resize": "fill"},
                       mask={"image": ref, "blur": 0, "invert": True}, loras=[{"name": "ink", "weight": 0.8}],
                       controls=[{"model": "canny", "image": ref, "weight": 0.5, "start": 0.1, "end": 0.9}])
    data = Gallery.encode(make_ready(req))
    params = read_parameters(data)
    assert params.warnings == ()
    assert params.build().request == dataclasses.replace(req, model="tiny-sd")
    payload = json.loads(read_png_text(data).text["darkroom"])["request"]
    assert payload["source"] == {"image": ref, "strength": 0.4, "resize": "fill"}
    assert len(data) < 20_000  # a reference, not pixels


def test_damaged_part_is_dropped_with_a_warning_and_the_rest_restores():
    req = make_request(prompt="kept", seed=5)
    payload = {"darkroom": 1, "request": {**req.to_dict(), "source": {"image": {"sha256": "../../etc", "path": "/etc/passwd"}},
                                          "loras": [{"name": "ok", "weight": 0.5}]}}
    params = read_parameters(png_with_text({"darkroom": json.dumps(payload)}))
    built = params.build().request
    assert built.prompt == "kept" and built.seed == 5 and built.source is None
    assert [lora.name for lora in built.loras] == ["ok"]
    assert any("source" in w for w in params.warnings)


def test_request_format_1_still_loads():
    old = {"darkroom": 1, "request": {"version": 1, "prompt": "old", "negative_prompt": "", "seed": 3, "steps": 20,
                                      "cfg": 6.0, "width": 512, "height": 512, "scheduler": "Euler a",
                                      "model": "darkroom-emoji", "batch_count": 1}, "model_name": "darkroom-emoji"}
    params = read_parameters(png_with_text({"darkroom": json.dumps(old)}))
    assert params.warnings == ()
    request = params.build().request
    assert (request.prompt, request.seed, request.sampler, request.model) == ("old", 3, "Euler a", "darkroom-emoji")


def test_written_png_has_both_chunks_and_unicode_goes_to_itxt():
    from PIL import Image
    import io

    req = make_request(prompt="日本語の風景")
    data = Gallery.encode(make_ready(req))
    assert b"iTXt" in data  # Pillow writes UTF-8 text as iTXt
    info = Image.open(io.BytesIO(data)).info
    assert info["parameters"].startswith("日本語の風景\n")
    payload = json.loads(info["darkroom"])
    assert payload["darkroom"] == 1 and payload["request"]["version"] == REQUEST_FORMAT_VERSION


def test_a1111_image_is_read():
    text = ("a castle on a hill\nNegative prompt: fog\nSteps: 30, Sampler: Euler a, Schedule type: Automatic, "
            "CFG scale: 5.5, Seed: 42, Size: 640x448, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
            "Clip skip: 2, Version: v1.10.1")
    params = read_parameters(png_with_text({"parameters": text}))
    assert params.source == "a1111"
    assert params.fields == {"prompt": "a castle on a hill", "negative_prompt": "fog", "seed": 42, "steps": 30,
                             "cfg": 5.5, "width": 640, "height": 448, "sampler": "Euler a"}
    assert params.model_name == "v1-5-pruned-emaonly" and params.model_hash == "6ce0161689"
    assert any("Clip skip" in w for w in params.warnings)
    assert "model" not in params.fields  # another tool's model name is shown, never used as a path


def test_darkroom_chunk_wins_over_parameters():
    chunks = darkroom_text_chunks(make_request(prompt="truth"))
    chunks["parameters"] = "something else\nSteps: 1, Seed: 1, CFG scale: 1"
    assert parameters_from_text(chunks).fields["prompt"] == "truth"


def test_damaged_darkroom_chunk_falls_back_to_parameters_with_a_warning():
    req = make_request(prompt="fallback")
    chunks = darkroom_text_chunks(req)
    chunks["darkroom"] = chunks["darkroom"][:-10]
    params = parameters_from_text(chunks)
    assert params.source == "a1111" and params.fields["prompt"] == "fallback"
    assert params.fields["seed"] == req.seed
    assert any("not valid JSON" in w for w in params.warnings)


def test_fooocus_json_parameters():
    data = {"prompt": "a glass bottle", "negative_prompt": "", "steps": 30, "guidance_scale": 4.0, "seed": "123",
            "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "base_model": "juggernautXL"}
    params = read_parameters(png_with_text({"parameters": json.dumps(data)}))
    assert params.source == "fooocus"
    assert params.fields["sampler"] == "DPM++ 2M SDE Karras"
    assert (params.fields["width"], params.fields["height"], params.fields["seed"]) == (1152, 896, 123)
    assert params.model_name == "juggernautXL"


def test_a1111_prompt_starting_with_a_brace_is_not_taken_for_json():
    text = "{red|blue} flowers, {2$$a|b}\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"
    params = parse_a1111(text)
    assert params.source == "a1111" and params.fields["prompt"] == "{red|blue} flowers, {2$$a|b}"


def test_comfyui_graph_is_read_best_effort():
    params = read_parameters(png_with_text({"prompt": json.dumps(comfy_graph()), "workflow": "{}"}))
    f = params.fields
    assert params.source == "comfyui"
    assert f["prompt"] == "beautiful scenery nature glass bottle" and f["negative_prompt"] == "text, watermark"
    assert (f["steps"], f["cfg"], f["sampler"], f["width"], f["height"]) == (20, 8.0, "Euler", 512, 640)
    assert "seed" not in f  # 156680208700286 is beyond Darkroom's seed range: dropped with a warning
    assert any("Seed" in w for w in params.warnings)
    assert params.model_name == "v1-5-pruned-emaonly.safetensors"


def test_comfyui_text_fed_from_another_node_and_custom_sampler():
    graph = {
        "1": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["2", 0], "guider": ["3", 0], "sampler": ["4", 0], "sigmas": ["5", 0], "latent_image": ["6", 0]}},
        "2": {"class_type": "RandomNoise", "inputs": {"noise_seed": 77}},
        "3": {"class_type": "CFGGuider", "inputs": {"cfg": 3.5, "positive": ["7", 0], "negative": ["8", 0], "model": ["9", 0]}},
        "4": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "5": {"class_type": "BasicScheduler", "inputs": {"scheduler": "karras", "steps": 12, "model": ["9", 0]}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ["10", 0]}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}},
        "9": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "10": {"class_type": "PrimitiveString", "inputs": {"value": "a neon sign"}},
    }
    f = parse_comfyui(json.dumps(graph)).fields
    assert f["prompt"] == "a neon sign" and f["seed"] == 77 and f["steps"] == 12 and f["cfg"] == 3.5
    assert f["sampler"] == "DPM++ 2M Karras" and (f["width"], f["height"]) == (1024, 1024)


def test_comfyui_cyclic_graph_terminates():
    graph = {"1": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 5, "positive": ["2", 0], "negative": ["2", 0]}},
             "2": {"class_type": "X", "inputs": {"a": ["3", 0]}}, "3": {"class_type": "Y", "inputs": {"b": ["2", 0]}}}
    f = parse_comfyui(json.dumps(graph)).fields
    assert f["seed"] == 1 and "prompt" not in f


def test_invokeai_metadata():
    params = read_parameters(png_with_text({"invokeai_metadata": json.dumps(invoke_metadata())}))
    f = params.fields
    assert params.source == "invokeai"
    assert (f["prompt"], f["negative_prompt"], f["seed"], f["steps"], f["cfg"]) == (
        "a red fox in the snow", "lowres", 3015486352, 30, 6.5)
    assert (f["width"], f["height"], f["sampler"]) == (768, 512, "DPM++ 2M Karras")
    assert params.model_name == "Dreamshaper 8"


def test_no_parameters_and_not_png_are_typed_errors(tmp_path):
    with pytest.raises(MetadataError) as e:
        read_parameters(png_with_text({"Software": "GIMP"}))
    assert e.value.code == "no_parameters" and "no generation parameters" in e.value.message
    with pytest.raises(MetadataError) as e:
        read_parameters(b"GIF89a....")
    assert e.value.code == "not_png"
    with pytest.raises(MetadataError) as e:
        read_parameters(tmp_path / "missing.png")
    assert e.value.code == "unreadable"


def test_malformed_parameters_are_a_typed_error():
    for chunks in ({"darkroom": "{"}, {"prompt": "[1, 2]"}, {"invokeai_metadata": "null"}, {"parameters": "   "}):
        with pytest.raises(MetadataError) as e:
            parameters_from_text(chunks)
        assert e.value.code == "malformed"


def test_wrong_types_and_absurd_numbers_give_a_partial_result():
    payload = {"darkroom": 1, "request": {"prompt": "ok", "negative_prompt": 5, "seed": -7, "steps": 10**30,
                                          "cfg": float("nan"), "width": "wide", "height": 1e308,
                                          "scheduler": ["Euler"], "model": {"x": 1}, "batch_count": True}}
    params = parse_darkroom(json.dumps(payload))
    assert params.fields == {"prompt": "ok"}
    assert len(params.warnings) >= 6
    assert params.build().request.prompt == "ok"


def test_newer_darkroom_format_is_read_with_a_warning():
    payload = {"darkroom": 99, "request": {"version": 7, "prompt": "future", "seed": 5, "new_field": 1}}
    params = parse_darkroom(json.dumps(payload))
    assert params.fields == {"prompt": "future", "seed": 5}
    assert any("newer Darkroom" in w for w in params.warnings)


def test_huge_prompt_is_cut_with_a_warning():
    text = "x" * (MAX_PROMPT_CHARS * 2) + "\nSteps: 20, Seed: 1, CFG scale: 7"
    params = parse_a1111(text)
    assert len(params.fields["prompt"]) == MAX_PROMPT_CHARS
    assert any("very long" in w for w in params.warnings)


def test_png_reader_limits_and_damage():
    bomb = zlib.compress(b"a" * (64 * 1024 * 1024), 9)  # 64 MiB of text in a ~64 KiB chunk
    chunks = [
        (b"zTXt", b"parameters\0\0" + bomb),
        (b"tEXt", b"darkroom\0" + b"{}"),
    ]
    data = png_with_text(chunks)
    png = read_png_text(data)
    assert "parameters" not in png.text and png.text["darkroom"] == "{}"
    assert any("too large" in w for w in png.warnings)
    # a text chunk with a bad CRC is skipped
    good = png_with_text([(b"tEXt", b"parameters\0hello")])
    bad = good.replace(b"parameters\0hello", b"parameters\0hellO")
    assert read_png_text(good).text["parameters"] == "hello"
    assert "parameters" not in read_png_text(bad).text
    # invalid UTF-8 in iTXt is replaced, with a warning
    itxt = png_with_text([(b"iTXt", b"parameters\0\0\0\0\0caf\xe9 \xff")])
    png = read_png_text(itxt)
    assert png.text["parameters"].startswith("caf") and any("UTF-8" in w for w in png.warnings)
    # a cut-off file still gives what came before the cut
    truncated = png_with_text([(b"tEXt", b"a\0b")])
    png = read_png_text(truncated[:-30])
    assert png.width == 8 and png.height == 8


def test_giant_declared_chunk_is_skipped_without_reading_it():
    from engine.gallery.metadata import PNG_SIGNATURE

    data = PNG_SIGNATURE + raw_chunk(b"IHDR", b"\0\0\0\x08\0\0\0\x08\x08\x02\0\0\0") + \
        b"\x7f\xff\xff\xfftEXt" + b"x" * 100
    png = read_png_text(data)
    assert png.text == {} and png.warnings


# -- fuzzing: untrusted metadata never raises anything but MetadataError ---------------------------------------
def _check(fn, text):
    try:
        result = fn(text)
    except MetadataError:
        return
    build_request(**result.fields)  # whatever is returned is usable
    for k, v in result.fields.items():
        if isinstance(v, float):
            assert math.isfinite(v)


# Hypothesis draws only a seed or a string (cheap); the structured JSON is built from the seed by a small
# generator, so ten thousand cases run in a few seconds.
ODD_VALUES = [None, True, False, 0, -1, 7, 150, 2**32, 2**64, 10**400, 1e308, -0.0, 7.5, "", "7", " 12 ", "1e5", "nan",
              "Euler", "euler_ancestral", "dpmpp_2m_k", "karras", "512x512", "(640, 480)", "x" * 300, "é\u0000",
              [1, 2], ["1", 0], ["9", 0], [[]], {}, {"a": 1}, {"name": 5}, [512, 512], float("nan"), float("inf"),
              "a red fox", "a red fox", 20, 20, 512, 768, 7.0, 12345, "Euler a", "dpmpp_2m", 1024]
KEYS = ["prompt", "negative_prompt", "seed", "steps", "cfg", "width", "height", "scheduler", "source", "loras", "mask", "controls", "model", "batch_count",
        "version", "positive_prompt", "cfg_scale", "guidance_scale", "resolution", "sampler", "class_type", "inputs",
        "text", "noise_seed", "latent_image", "positive", "negative", "sampler_name", "image", "request", "darkroom",
        "ckpt_name", "guider", "sigmas", "value", "model_name", "name", "hash"]


def random_json(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice(ODD_VALUES) if rng.random() < 0.7 else rng.randint(-(2**70), 2**70)
    if roll < 0.6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS) if rng.random() < 0.85 else str(rng.randint(0, 9)): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 8))}


def random_object(rng: random.Random, links: int = 0) -> dict:
    out = {}
    for _ in range(rng.randint(0, 9)):
        key = rng.choice(KEYS)
        roll = rng.random()
        out[key] = [str(rng.randrange(links)), 0] if links and roll < 0.3 else random_json(rng, 2 if roll < 0.8 else 0)
    return out


def random_source(seed: int) -> str:
    rng = random.Random(seed)
    kind = seed % 4
    if kind == 0:
        value = {"darkroom": rng.choice([1, 2, "1", None]), "request": random_object(rng)}
    elif kind == 1:
        n = rng.randint(0, 6)
        value = {str(i): {"class_type": rng.choice(["KSampler", "KSamplerAdvanced", "CLIPTextEncode",
                                                    "EmptyLatentImage", "X"]),
                          "inputs": random_object(rng, n)} for i in range(n)}
    elif kind == 2:
        value = random_object(rng)
    else:
        value = random_json(rng)
    text = json.dumps(value)
    if rng.random() < 0.1:
        text = text[: rng.randint(0, len(text))]  # cut short
    return text


JSONISH = st.text(st.sampled_from(list('{}[]":,0123456789.-eE truefalsnul\\')), max_size=60)


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1).map(random_source) | JSONISH)
def test_fuzz_json_sources(text):
    for fn in (parse_darkroom, parse_comfyui, parse_invokeai, parse_a1111):
        _check(fn, text)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.text(max_size=60))
def test_fuzz_any_chunks(seed, text):
    rng = random.Random(seed)
    keys = ["darkroom", "parameters", "prompt", "invokeai_metadata", "sd-metadata", "x"]
    chunks = {k: (random_source(rng.randrange(2**32)) if rng.random() < 0.7 else text)
              for k in rng.sample(keys, rng.randint(0, 4))}
    try:
        result = parameters_from_text(chunks)
    except MetadataError as exc:
        assert exc.code in ("no_parameters", "malformed")
        return
    build_request(**result.fields)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR", b"IDAT", b"IEND"]),
       st.integers(0, 3))
def test_fuzz_png_bytes(body, ctype, where):
    base = png_with_text({"parameters": format_infotext(make_request())})
    chunk = raw_chunk(ctype, body)
    cut = [8, 33, len(base) - 12, len(base)][where]
    for data in (base[:cut] + chunk + base[cut:], base[:8] + body, body):
        try:
            read_parameters(data)
        except MetadataError:
            pass
