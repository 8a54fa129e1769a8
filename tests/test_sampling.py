"""The loop's arithmetic, family by family: x0 from each prediction kind against the closed form, the noise
level read off the scheduler, and a whole loop run for a flow-matching family (which no real model of Darkroom's
is yet) with a network that knows the answer."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from engine.devices import DeviceChoice
from engine.families.base import Conditioning, Family, LatentFormat
from engine.request import build_request
from engine.samplers import get
from engine.sampling import NoiseLevel, denoise, noise_level, predicted_x0


@pytest.fixture
def clean_and_noise():
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(2, 4, 5, 3, generator=generator, dtype=torch.float64),
            torch.randn(2, 4, 5, 3, generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("level", [NoiseLevel.alpha(0.3), NoiseLevel.alpha(0.999), NoiseLevel.sigma(2.5),
                                   NoiseLevel.sigma(0.05), NoiseLevel.flow(0.7), NoiseLevel.flow(0.01)])
def test_noise_levels_describe_the_latent(level):
    assert level.norm == pytest.approx(math.hypot(level.signal, level.noise))
    assert level.signal > 0 and level.noise > 0


def test_epsilon_x0_is_the_closed_form(clean_and_noise):
    x0, eps = clean_and_noise
    a_bar = 0.3
    x = math.sqrt(a_bar) * x0 + math.sqrt(1 - a_bar) * eps
    got = predicted_x0("epsilon", x, eps, NoiseLevel.alpha(a_bar))
    assert torch.allclose(got, (x - math.sqrt(1 - a_bar) * eps) / math.sqrt(a_bar)) and torch.allclose(got, x0)
    sigma = 2.5  # k-diffusion space: x = x0 + σ·ε
    x = x0 + sigma * eps
    got = predicted_x0("epsilon", x, eps, NoiseLevel.sigma(sigma))
    assert torch.allclose(got, x - sigma * eps) and torch.allclose(got, x0)


def test_v_prediction_x0_is_the_closed_form(clean_and_noise):
    x0, eps = clean_and_noise
    a_bar = 0.3
    x = math.sqrt(a_bar) * x0 + math.sqrt(1 - a_bar) * eps
    v = math.sqrt(a_bar) * eps - math.sqrt(1 - a_bar) * x0
    got = predicted_x0("v_prediction", x, v, NoiseLevel.alpha(a_bar))
    assert torch.allclose(got, math.sqrt(a_bar) * x - math.sqrt(1 - a_bar) * v) and torch.allclose(got, x0)
    sigma = 2.5  # the network sees x/√(σ²+1) = α·x0 + σ'·ε with α = 1/√(σ²+1), σ' = σ/√(σ²+1)
    x = x0 + sigma * eps
    alpha, sigma_vp = 1 / math.sqrt(sigma**2 + 1), sigma / math.sqrt(sigma**2 + 1)
    v = alpha * eps - sigma_vp * x0
    got = predicted_x0("v_prediction", x, v, NoiseLevel.sigma(sigma))
    assert torch.allclose(got, x / (sigma**2 + 1) - v * sigma / math.sqrt(sigma**2 + 1)) and torch.allclose(got, x0)


def test_flow_x0_is_the_closed_form(clean_and_noise):
    x0, eps = clean_and_noise
    for sigma in (1.0, 0.7, 0.01):
        x = (1 - sigma) * x0 + sigma * eps
        v = eps - x0
        got = predicted_x0("flow", x, v, NoiseLevel.flow(sigma))
        assert torch.allclose(got, x - sigma * v) and torch.allclose(got, x0)


def test_unknown_prediction_kind_is_an_error(clean_and_noise):
    with pytest.raises(ValueError):
        predicted_x0("sample", *clean_and_noise, NoiseLevel.alpha(0.5))


def test_noise_level_is_read_off_the_scheduler_as_host_floats():
    config = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    euler = get("Euler").make(config)
    euler.set_timesteps(5, device="cpu")
    t = euler.timesteps[0]
    euler.scale_model_input(torch.zeros(1), t)  # sets the step index, as in the loop
    level = noise_level(euler, get("Euler"), "epsilon", t, 0)
    assert isinstance(level.noise, float) and level == NoiseLevel.sigma(float(euler.sigmas[0]))
    ddim = get("DDIM").make(config)
    ddim.set_timesteps(5, device="cpu")
    t = ddim.timesteps[2]
    assert noise_level(ddim, get("DDIM"), "epsilon", t, 2) == NoiseLevel.alpha(float(ddim.alphas_cumprod[int(t)]))


class OracleFlow(torch.nn.Module):
    """A flow-matching network that knows the image: at x_t = (1−σ)·x0 + σ·ε it returns v = ε − x0 exactly."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        sigma = t / 1000.0  # flow-matching timesteps are σ·1000
        return ((x - self.target) / sigma,)


class ToyFlowFamily(Family):
    """The smallest flow-matching family: 16 latent channels, no text, the oracle network."""

    name, title, pipelines = "toy-flow", "toy flow", ()
    weight_components, denoiser_component = (), "transformer"

    def __init__(self, target):
        super().__init__(DeviceChoice("cpu", "float32"))
        self.network = OracleFlow(target)
        self.prediction = "flow"
        self.scheduler_config = {"num_train_timesteps": 1000, "shift": 1.0}
        self.latent_format = LatentFormat(channels=16, scaling_factor=1.0, vae_scale_factor=8)

    @classmethod
    def checkpoint_config(cls, keys):
        return None

    @classmethod
    def load_folder(cls, folder, device):
        raise NotImplementedError

    @classmethod
    def load_single_file(cls, path, config, device):
        raise NotImplementedError

    @property
    def denoiser(self):
        return self.network

    def scheduler_for(self, sampler):
        from diffusers import FlowMatchEulerDiscreteScheduler

        assert sampler.name == "Euler"
        return FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)

    def encode(self, prompt, negative_prompt, cfg, height, width):
        return Conditioning({}, cfg)

    def model_inputs(self, x, t, cond):
        return (x, t), {}

    def decode(self, latents, half_first=False):
        raise NotImplementedError


def test_the_loop_runs_a_flow_matching_family_and_previews_its_x0():
    target = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(3))
    family = ToyFlowFamily(target)
    model = SimpleNamespace(family=family, device=family.device)
    request = build_request(prompt="", seed=5, steps=4, cfg=1.0, width=64, height=64, sampler="Euler").request
    request = dataclasses.replace(request, width=48, height=32)
    cond = family.encode("", "", False, 32, 48)
    states = []
    latents = denoise(model, request, cond, request.seed, states.append, lambda: False)
    assert family.network.calls == 4 and [s.step for s in states] == [1, 2, 3, 4]
    for state in states:  # the oracle's x0 estimate is the image at every step, noise or not
        assert torch.allclose(state.x0, target, atol=1e-4)
    assert torch.allclose(latents, target, atol=1e-4)
    start = family.initial_noise(request.seed, 32, 48)
    assert not torch.allclose(states[0].latents, target, atol=0.1) and start.shape == target.shape
