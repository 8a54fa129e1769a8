import json
import math

import pytest

from engine.samplers import SAMPLER_NAMES
from engine.request import SEED_MAX, GenerationRequest, ValidationError, build_request, parse_seed


def errors_of(**kwargs) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        build_request(prompt="x", **kwargs)
    return info.value.errors


def test_defaults_resolve_random_seed_into_the_seed_used():
    built = build_request(prompt="a red apple")
    assert 0 <= built.request.seed <= SEED_MAX
    assert built.notices == ()
    seeds = {build_request(prompt="x").request.seed for _ in range(5)}
    assert len(seeds) > 1


@pytest.mark.parametrize("value", ["random", "", None, -1, "-1", " Random "])
def test_random_seed_spellings(value):
    assert parse_seed(value) is None


@pytest.mark.parametrize("value,expected", [(0, 0), ("42", 42), (SEED_MAX, SEED_MAX), (7.0, 7), (" 12 ", 12)])
def test_valid_seeds(value, expected):
    assert build_request(prompt="x", seed=value).request.seed == expected


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("abc", "whole number from 0 to 4294967295"),
        (SEED_MAX + 1, "out of range"),
        (-5, "out of range"),
        (1.5, "whole number"),
        (True, "whole number"),
        ([1], "whole number"),
    ],
)
def test_bad_seed_messages(value, fragment):
    assert fragment in errors_of(seed=value)["seed"]


@pytest.mark.parametrize("steps", [0, 151, "many", 2.5, None])
def test_bad_steps(steps):
    assert errors_of(steps=steps)["steps"].startswith("Steps must be")


@pytest.mark.parametrize("cfg", [-0.1, 30.5, math.nan, math.inf, "strong", None])
def test_bad_cfg(cfg):
    assert "CFG scale must be" in errors_of(cfg=cfg)["cfg"]


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("value", [63, 2049, "wide", 0])
def test_bad_sizes(field, value):
    assert "from 64 to 2048" in errors_of(**{field: value})[field]


def test_sizes_round_to_multiple_of_8_with_notice():
    built = build_request(prompt="x", width=100, height=515)
    assert (built.request.width, built.request.height) == (104, 512)
    assert built.notices == ("Width 100 is not a multiple of 8; using 104.", "Height 515 is not a multiple of 8; using 512.")


def test_unknown_sampler_lists_choices():
    message = errors_of(sampler="Warp drive")["sampler"]
    assert "Warp drive" in message and "DPM++ 2M Karras" in message


def test_every_bad_field_reported_at_once():
    errors = errors_of(seed="x", steps=0, cfg=99, batch_count=0)
    assert set(errors) == {"seed", "steps", "cfg", "batch_count"}


def test_prompt_must_be_text():
    with pytest.raises(ValidationError) as info:
        build_request(prompt=5)
    assert "prompt" in info.value.errors


def test_image_request_uses_seed_plus_k_and_wraps():
    request = build_request(prompt="x", seed=SEED_MAX - 1, batch_count=3).request
    assert [request.image_request(k).seed for k in range(3)] == [SEED_MAX - 1, SEED_MAX, 0]
    assert request.image_request(1).batch_count == 1


def test_dict_round_trip_is_exact():
    request = build_request(prompt="a\nb ✨", negative_prompt="blur", seed=9, steps=30, cfg=6.5, width=768,
                            height=512, sampler=SAMPLER_NAMES[4], model="m", batch_count=2).request
    data = request.to_dict()
    assert data["version"] == 2
    assert GenerationRequest.from_dict(data).request == request


def test_from_dict_rejects_non_mapping_and_bad_values():
    with pytest.raises(ValidationError):
        GenerationRequest.from_dict(["not", "a", "dict"])
    with pytest.raises(ValidationError) as info:
        GenerationRequest.from_dict({"prompt": "x", "steps": 10**9, "unknown": 1})
    assert set(info.value.errors) == {"steps"}


def test_request_is_frozen():
    request = build_request(prompt="x").request
    with pytest.raises(AttributeError):
        request.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize("text,fragment", [("a\x00b", "NUL byte"), ("bad \udcff bytes", "not valid UTF-8"),
                                           ("esc \x1b[31m", "control character")])
def test_text_that_cannot_be_stored_is_refused_where_the_request_is_built(text, fragment):
    assert fragment in errors_of(negative_prompt=text)["negative_prompt"]
    with pytest.raises(ValidationError) as info:
        build_request(prompt=text)
    assert fragment in info.value.errors["prompt"]


def test_line_breaks_and_tabs_are_fine():
    assert build_request(prompt="a\n\tb\r\nc").request.prompt == "a\n\tb\r\nc"


def test_parts_are_empty_by_default_and_left_out_of_the_json():
    request = build_request(prompt="x").request
    assert (request.source, request.mask, request.loras, request.controls, request.parts) == (None, None, (), (), ())
    assert not {"source", "mask", "loras", "controls"} & set(request.to_dict())


REF = {"sha256": "0f" * 32, "path": "sources/0f.png"}


def test_parts_validate_and_round_trip():
    request = build_request(prompt="x", source={"image": REF, "strength": 0.3}, mask={"image": REF, "blur": 2},
                            loras=[{"name": "a", "weight": 0.5}, {"name": "b"}],
                            controls=[{"model": "canny", "image": REF, "start": 0.2}]).request
    assert request.parts == ("source", "mask", "loras", "controls")
    assert request.source.strength == 0.3 and request.source.resize == "fit"
    assert [(lora.name, lora.weight) for lora in request.loras] == [("a", 0.5), ("b", 1.0)]
    again = GenerationRequest.from_dict(json.loads(json.dumps(request.to_dict()))).request
    assert again == request


@pytest.mark.parametrize(
    "part,value,fragment",
    [
        ("source", {"image": REF, "strength": 1.5}, "Denoising strength must be from 0 to 1"),
        ("source", {"image": {"sha256": "xyz", "path": "a.png"}}, "SHA-256"),
        ("source", {"image": REF, "resize": "zoom"}, "Resize mode"),
        ("source", "an image", "JSON object"),
        ("mask", {"image": REF, "blur": -1}, "Mask blur"),
        ("loras", {"name": "a"}, "must be a list"),
        ("loras", [{"name": "", "weight": 1}], "needs a name"),
        ("loras", [{"name": "a", "weight": math.inf}], "weight"),
        ("controls", [{"model": "c", "image": REF, "start": 0.8, "end": 0.2}], "start before it ends"),
    ],
)
def test_bad_parts_are_reported_by_name(part, value, fragment):
    assert fragment in errors_of(**{part: value})[part]


def test_unknown_field_names_are_a_programming_error():
    with pytest.raises(TypeError):
        build_request(prompt="x", scheduler="Euler")


def test_every_registry_field_is_described_for_people():
    from engine.fields import FIELDS

    for field in FIELDS:
        assert field.label and field.tooltip.endswith(".")
        assert field.parse(field.default) is not None or field.kind == "seed"
        assert field.name in build_request(prompt="x").request.core()
