"""The sampler table: every row builds its scheduler, and other tools' names map onto the rows."""

import pytest

from engine import samplers

BASE_CONFIG = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}


@pytest.mark.parametrize("name", samplers.SAMPLER_NAMES)
def test_every_row_makes_a_fresh_scheduler_of_its_class(name):
    row = samplers.get(name)
    first, second = row.make(BASE_CONFIG), row.make(BASE_CONFIG)
    assert type(first).__name__ == row.class_name and first is not second
    for key, value in row.overrides.items():
        assert first.config[key] == value


def test_names_are_unique_and_the_default_is_a_row():
    assert len(set(samplers.SAMPLER_NAMES)) == len(samplers.SAMPLERS)
    assert samplers.get(samplers.DEFAULT_SAMPLER).name == samplers.DEFAULT_SAMPLER
    with pytest.raises(KeyError):
        samplers.get("Warp drive")


@pytest.mark.parametrize(
    "alias,expected",
    [("dpmpp_2m_k", "DPM++ 2M Karras"), ("k_euler_a", "Euler a"), ("euler_ancestral", "Euler a"),
     ("uni_pc", "UniPC"), ("dpmpp_2m", "DPM++ 2M"), ("DPM++ 2M SDE Karras", "DPM++ 2M SDE Karras"), ("warp", None)],
)
def test_other_tools_names(alias, expected):
    assert samplers.from_alias(alias) == expected
