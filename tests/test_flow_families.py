"""SD3 and Flux.1: the flow-matching families. Their loop gives the same latents as diffusers' own pipelines for
the same noise; SD3 runs with or without T5; Flux has no CFG batch, takes the CFG scale as its guidance input
(dev) or ignores it (schnell), and shifts its schedule by the image's size; every sampler has a flow form."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from engine import families, samplers
from engine.devices import choose_device
from engine.errors import DarkroomError
from engine.families.flow import calculate_shift, image_shift
from engine.families.flux import Flux, pack, unpack
from engine.families.sd3 import T5_TOKENS, StableDiffusion3
from engine.loader import load_model
from engine.models import native_size, resolve
from engine.request import build_request
from engine.sampling import denoise


@pytest.fixture(scope="module")
def cpu():
    return choose_device("cpu")


@pytest.fixture(scope="module")
def sd3(tiny_sd3_dir, cpu):
    return load_model(resolve(str(tiny_sd3_dir)), cpu)


@pytest.fixture(scope="module")
def flux(tiny_flux_dir, cpu):
    return load_model(resolve(str(tiny_flux_dir)), cpu)


@pytest.fixture(scope="module")
def schnell(tiny_schnell_dir, cpu):
    return load_model(resolve(str(tiny_schnell_dir)), cpu)


def make_request(**overrides):
    fields = dict(prompt="a red apple", seed=3, steps=4, cfg=4.0, width=64, height=64, sampler="Euler")
    fields.update(overrides)
    return build_request(**fields).request


def run(model, req, on_step=lambda s: None):
    return denoise(model, req, model.family.condition(req), req.seed, on_step, lambda: False)


def test_the_registry_knows_both_families():
    assert families.for_pipeline("StableDiffusion3Pipeline") is StableDiffusion3
    assert families.for_pipeline("FluxPipeline") is Flux
    assert families.by_name("sd3") is StableDiffusion3 and families.by_name("flux") is Flux
    assert "SD3" in families.SUPPORTED and "Flux" in families.SUPPORTED


def test_families_read_their_models(sd3, flux, tiny_sd3_dir, tiny_flux_dir):
    for model, scale, shift in ((sd3, 1.5305, 0.0609), (flux, 0.3611, 0.1159)):
        fmt = model.family.latent_format
        assert model.family.prediction == "flow"
        assert (fmt.channels, fmt.scaling_factor, fmt.shift, fmt.vae_scale_factor) == (16, scale, shift, 8)
        assert len(fmt.preview_factors) == 16 and all(len(row) == 3 for row in fmt.preview_factors)
        assert model.preview.factors == fmt.preview_factors and model.preview.bias == fmt.preview_bias
        assert model.family.noise_shape(64, 96) == (1, 16, 8, 12)
    assert sd3.family.latent_format.preview_factors[0] == (-0.0922, -0.0175, 0.0749)
    assert sd3.family.latent_format.preview_bias == (0.2394, 0.2135, 0.1925)
    assert flux.family.latent_format.preview_factors[15] == (-0.1262, -0.0982, -0.0778)
    assert flux.family.latent_format.preview_bias == (-0.0329, -0.0718, -0.0851)
    assert native_size(str(tiny_sd3_dir)) == (64, 64) and native_size(str(tiny_flux_dir)) == (64, 64)


def test_sd3_loop_gives_the_latents_of_diffusers_pipeline(sd3, tiny_sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    req = make_request(cfg=4.0)
    ours = run(sd3, req)
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_dir)
    theirs = pipe(req.prompt, negative_prompt="", guidance_scale=req.cfg, num_inference_steps=req.steps,
                  latents=sd3.family.initial_noise(req.seed, 64, 64), height=64, width=64, output_type="latent").images
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("name", ["flux", "schnell"])
def test_flux_loop_gives_the_latents_of_diffusers_pipeline(name, request, tiny_flux_dir, tiny_schnell_dir):
    from diffusers import FluxPipeline

    model = request.getfixturevalue(name)
    folder = tiny_flux_dir if name == "flux" else tiny_schnell_dir
    req = make_request(width=96, height=64, cfg=4.0)
    ours = run(model, req)
    pipe = FluxPipeline.from_pretrained(folder)
    noise = model.family.initial_noise(req.seed, 64, 96)
    theirs = pipe(req.prompt, guidance_scale=req.cfg, num_inference_steps=req.steps, latents=pack(noise), height=64,
                  width=96, output_type="latent", max_sequence_length=model.family.t5_tokens).images
    assert torch.allclose(ours, unpack(theirs, 8, 12), atol=1e-5)


def test_sd3_conditioning_joins_three_encoders_and_t5_is_optional(sd3, tiny_sd3_dir, cpu, tmp_path):
    cond = sd3.family.condition(make_request(negative_prompt="blurry"))
    embeds, pooled = cond.tensors["embeds"], cond.tensors["pooled"]
    assert cond.cfg and embeds.shape == (2, 77 + T5_TOKENS, 64) and pooled.shape == (2, 64)
    assert embeds[:, 77:].abs().sum() > 0  # T5's states follow CLIP's
    assert not embeds[:, :77, 64:].any()  # CLIP-L ‖ CLIP-G (32 + 32) padded to T5's width is already full here
    alone = sd3.family.condition(make_request(cfg=1.0))
    assert not alone.cfg and torch.equal(alone.tensors["embeds"][0], embeds[1])

    without = tmp_path / "no-t5"
    shutil.copytree(tiny_sd3_dir, without)
    shutil.rmtree(without / "text_encoder_3")
    lean = load_model(resolve(str(without)), cpu).family
    assert lean.t5 is None
    lean_cond = lean.condition(make_request())
    assert lean_cond.tensors["embeds"].shape == embeds.shape and not lean_cond.tensors["embeds"][:, 77:].any()
    assert torch.equal(lean_cond.tensors["embeds"][1, :77], embeds[1, :77])  # the same CLIP states
    assert torch.isfinite(run(load_model(resolve(str(without)), cpu), make_request(steps=2))).all()


def test_flux_has_no_cfg_batch_and_takes_guidance_as_input(flux, schnell):
    cond = flux.family.condition(make_request(cfg=3.5, negative_prompt="blurry"))
    assert not cond.cfg and cond.tensors["embeds"].shape == (1, 512, 32) and cond.tensors["pooled"].shape == (1, 32)
    assert cond.tensors["guidance"].tolist() == [3.5]
    assert cond.tensors["img_ids"].shape == (16, 3) and cond.tensors["img_ids"][-1].tolist() == [0, 3, 3]
    a, b = run(flux, make_request(cfg=1.0)), run(flux, make_request(cfg=6.0))
    assert not torch.allclose(a, b)  # dev: the scale is an input of the network
    plain = schnell.family.condition(make_request(cfg=6.0))
    assert "guidance" not in plain.tensors and plain.tensors["embeds"].shape == (1, 256, 32)
    assert torch.equal(run(schnell, make_request(cfg=1.0)), run(schnell, make_request(cfg=6.0)))  # ignored


def test_flux_shift_grows_with_the_image_and_schnell_keeps_its_own(flux, schnell):
    config = flux.family.scheduler_config
    assert calculate_shift(256) == pytest.approx(0.5) and calculate_shift(4096) == pytest.approx(1.15)
    assert image_shift(config, 4096) == pytest.approx(math.exp(1.15))
    euler = samplers.get("Euler")
    small = flux.family.schedule(euler, 4, 64, 64)
    large = flux.family.schedule(euler, 4, 1024, 1024)
    sigma = 0.75  # the second of linspace(1, 1/4, 4), shifted by e^μ for 16 and 4096 tokens
    for scheduler, tokens in ((small, 16), (large, 4096)):
        shift = math.exp(calculate_shift(tokens))
        assert float(scheduler.sigmas[1]) == pytest.approx(shift * sigma / (1 + (shift - 1) * sigma), rel=1e-5)
    assert float(large.sigmas[1]) > float(small.sigmas[1])
    fixed = schnell.family.schedule(euler, 4, 1024, 1024)
    assert [round(float(s), 4) for s in fixed.sigmas] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_pack_and_unpack_are_inverse():
    x = torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(0))
    tokens = pack(x)
    assert tokens.shape == (2, 15, 64) and torch.equal(tokens[0, 0, :4], x[0, 0, :2, :2].reshape(4))
    assert torch.equal(unpack(tokens, 6, 10), x)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_sizes_must_fit_the_patches(name, request):
    model = request.getfixturevalue(name)
    with pytest.raises(DarkroomError) as info:
        model.family.condition(make_request(width=72))
    assert "multiples of 16" in info.value.message and "72×64" in info.value.message


@pytest.mark.parametrize("sampler", samplers.SAMPLER_NAMES)
def test_every_sampler_runs_on_flow_models_deterministically(sampler, sd3, flux):
    for model in (sd3, flux):
        req = make_request(sampler=sampler, steps=3)
        states = []
        first = run(model, req, states.append)
        assert torch.isfinite(first).all() and [s.step for s in states] == [1, 2, 3]
        assert states[-1].x0.shape == (1, 16, 8, 8)
        assert torch.equal(first, run(model, req))


def test_flow_sampler_table_covers_every_sampler_and_keeps_noise_free_ones_noise_free():
    assert set(samplers.FLOW_SAMPLERS) == set(samplers.SAMPLER_NAMES)
    for sampler in samplers.SAMPLERS:
        flow = samplers.for_flow(sampler.name)
        stochastic = flow.overrides.get("stochastic_sampling") or "sde" in str(flow.overrides.get("algorithm_type"))
        assert not (sampler.noise_free and stochastic), sampler.name
    assert samplers.for_flow("Euler").class_name == "FlowMatchEulerDiscreteScheduler"
    assert samplers.for_flow("DDIM").note and not samplers.for_flow("Euler").note
    with pytest.raises(KeyError):
        samplers.for_flow("Nonexistent")


class _Oracle(torch.nn.Module):
    """At x_t = (1−σ)·x0 + σ·ε returns exactly v = ε − x0 for a known x0."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x, t):
        return ((x - self.target) / (t / 1000.0),)


@pytest.mark.parametrize("sampler", samplers.SAMPLER_NAMES)
def test_every_flow_sampler_reaches_a_known_image_and_previews_it(sampler, sd3):
    """With a network that knows the answer, every flow form of a sampler ends at the image, and the loop's x0
    preview is that image at every step: the flow schedulers and the loop agree on σ. (DPM++ and UniPC hand the
    network whole timesteps, σ·1000 rounded, as diffusers does: hence the tolerance.)"""
    target = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    family = sd3.family
    oracle = _Oracle(target)
    original = family.model_inputs
    family.model_inputs = lambda x, t, cond: ((x, t), {})
    try:
        req = make_request(sampler=sampler, steps=6, cfg=1.0)
        states = []
        cond = family.condition(req)
        latents = denoise(sd3, req, cond, req.seed, states.append, lambda: False, denoiser=oracle)
    finally:
        family.model_inputs = original
    assert torch.allclose(latents, target, atol=1e-2)
    for state in states:
        assert torch.allclose(state.x0, target, atol=1e-2)


def test_loop_output_decodes_to_an_image(sd3, flux):
    for model in (sd3, flux):
        image, notes = model.family.decode(run(model, make_request(steps=2)))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and not image.flags.writeable and notes == ()
