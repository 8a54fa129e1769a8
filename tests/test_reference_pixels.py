"""The denoising loop makes the pixels it made before it was rewritten for model families.

``data/reference_pixels.npz`` was generated on a CPU, one thread, by the engine at commit 1fea93a (the loop
written for SD and SDXL only, before families existed), from the tiny fixtures in tests/tiny_models.py: every
sampler with CFG on and off for SD and SDXL, every sampler for a v-prediction copy of the SD fixture, and an
empty negative prompt (SDXL conditions on zeros for it). Each case holds the final image and the x0 and
noisy-latent previews of every step, 48×32 (non-square, so width and height cannot swap unseen).

Float rounding in a different order (another CPU, another thread count) may move a value across a rounding
boundary, so a handful of values may differ by one level; anything the code changes differs far more.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.devices import choose_device
from engine.loader import load_model
from engine.models import resolve
from engine.request import build_request
from engine.sampling import denoise

REFERENCE = Path(__file__).parent / "data" / "reference_pixels.npz"
WIDTH, HEIGHT = 48, 32


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def one_thread():
    """The reference was made with one intra-op thread; the same here keeps float sums in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tiny_model_dir, tiny_sdxl_dir, tmp_path_factory, one_thread):
    v_model = tmp_path_factory.mktemp("models") / "tiny-sd-v"
    shutil.copytree(tiny_model_dir, v_model)
    config = v_model / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "v_prediction"}))
    cpu = choose_device("cpu")
    return {label: load_model(resolve(str(folder)), cpu) for label, folder in
            (("sd", tiny_model_dir), ("sdxl", tiny_sdxl_dir), ("sd-v", v_model))}


def _cases(reference) -> list[tuple[str, str, float, int, str, str]]:
    """(model label, sampler, cfg, seed, negative prompt, key prefix) of every case in the file."""
    cases = []
    for name in sorted({n.rsplit("|", 1)[0] for n in reference}):
        label, sampler, cfg, seed = name.split("|")
        negative = "" if label.endswith("-no-negative") else "blurry"
        cases.append((label.removesuffix("-no-negative"), sampler, float(cfg[4:]), int(seed[5:]), negative, name))
    return cases


def generate(model, sampler: str, cfg: float, seed: int, negative: str):
    request = build_request(prompt="a red apple", negative_prompt=negative, seed=seed, steps=4, cfg=cfg,
                            width=64, height=64, sampler=sampler, model="").request
    # Below the form's minimum size, to keep the fixture small; the loop takes any multiple of 8.
    request = dataclasses.replace(request, width=WIDTH, height=HEIGHT)
    family = model.family
    cond = family.encode(request.prompt, request.negative_prompt, request.cfg > 1.0, HEIGHT, WIDTH)
    x0, xt = [], []

    def on_step(state):
        x0.append(model.preview.to_rgb(state.x0))
        xt.append(model.preview.to_rgb(state.xt_view))

    latents = denoise(model, request, cond, request.seed, on_step, lambda: False)
    image, _ = family.decode(latents)
    return {"image": image, "x0": np.stack(x0), "xt": np.stack(xt)}


def test_reference_covers_every_sampler_and_both_families(reference):
    from engine.samplers import SAMPLER_NAMES

    cases = _cases(reference)
    assert len(cases) == 52
    for label, cfgs in (("sd", {1.0, 7.0}), ("sdxl", {1.0, 7.0}), ("sd-v", {5.0})):
        for sampler in SAMPLER_NAMES:
            assert {c[2] for c in cases if c[0] == label and c[1] == sampler and c[4]} == cfgs, (label, sampler)


def test_loop_makes_the_reference_pixels(reference, models):
    mismatched = {}
    for label, sampler, cfg, seed, negative, name in _cases(reference):
        made = generate(models[label], sampler, cfg, seed, negative)
        for part, array in made.items():
            expected = reference[f"{name}|{part}"]
            assert array.shape == expected.shape and array.dtype == np.uint8, (name, part)
            diff = np.abs(array.astype(np.int16) - expected.astype(np.int16))
            if diff.any():
                mismatched[f"{name}|{part}"] = (int(diff.max()), int((diff > 0).sum()), diff.size)
    assert all(worst <= 1 for worst, _, _ in mismatched.values()), mismatched
    # Off-by-one rounding in a few pixels (a float summed in another order by another library build) is allowed;
    # anything larger, or widespread, is a change in the loop.
    assert sum(count for _, count, _ in mismatched.values()) <= 32, mismatched
