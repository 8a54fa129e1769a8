"""Compare grids: axes parsed and checked by the registry, expanded into one request per cell, labelled picture."""

import numpy as np
import pytest

from engine.grid import GridError, compose, expand, parse_axis
from engine.request import build_request

BASE = build_request(prompt="a red apple", negative_prompt="red blur", seed=1, steps=10, cfg=7, batch_count=4).request


def test_two_axes_expand_x_fastest_with_everything_else_fixed():
    cells = expand(BASE, [parse_axis("cfg=3,5,7"), parse_axis("seed=1,2")])
    assert [c.coords for c in cells] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert [(c.request.cfg, c.request.seed) for c in cells] == [(3, 1), (5, 1), (7, 1), (3, 2), (5, 2), (7, 2)]
    assert all(c.request.steps == 10 and c.request.batch_count == 1 and c.request.prompt == BASE.prompt for c in cells)


def test_prompt_search_and_replace_and_sampler_and_lora_axes():
    cells = expand(BASE, [parse_axis("prompt=red,green,blue"), parse_axis('sampler="Euler a",DDIM'),
                          parse_axis("lora:ink=0.5,1")])
    assert len(cells) == 12
    first = cells[0].request
    assert first.prompt == "a red apple" and first.sampler == "Euler a" and first.loras[0].weight == 0.5
    second = cells[1].request
    assert second.prompt == "a green apple" and second.negative_prompt == "green blur"
    assert cells[-1].request.loras[0].name == "ink" and cells[-1].request.sampler == "DDIM"


@pytest.mark.parametrize(
    "spec,fragment",
    [("cfg", "looks like"), ("cfg=", "no values"), ("cfg=3,99", "from 0 to 30"), ("steps=a", "whole number"),
     ("warp=1,2", "cannot be an axis"), ("sampler=Warp", "Unknown sampler"), ("prompt=only", "replacement"),
     ("seed=random", "fixed values"), ("strength=2", "from 0 to 1"), ("lora:=1", "names its LoRA")],
)
def test_bad_axes_have_clear_messages(spec, fragment):
    with pytest.raises(GridError, match=fragment):
        parse_axis(spec)


def test_strength_axis_needs_a_source_and_grids_are_bounded():
    with pytest.raises(GridError, match="source image"):
        expand(BASE, [parse_axis("strength=0.3,0.6")])
    with pytest.raises(GridError, match="one axis only"):
        expand(BASE, [parse_axis("cfg=1,2"), parse_axis("cfg=3")])
    with pytest.raises(GridError, match="at most"):
        expand(BASE, [parse_axis("seed=" + ",".join(map(str, range(40)))), parse_axis("steps=" + ",".join(map(str, range(1, 41))))])


def test_compose_labels_and_fills_missing_cells_grey():
    axes = [parse_axis("cfg=3,5"), parse_axis("seed=1,2")]
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    picture = compose({(0, 0): red}, axes, (32, 32))
    h, w, _ = picture.shape
    assert w > 64 and h > 64  # labels around two by two cells
    assert (picture == [255, 0, 0]).all(axis=2).sum() >= 32 * 32 - 64
    assert (picture == [200, 200, 200]).all(axis=2).sum() >= 3 * 32 * 32 - 200
