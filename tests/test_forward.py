"""The forward process against its formula and against diffusers' own schedules."""

import math

import numpy as np
import pytest

from engine.forward import img2img_start, schedule_from_config

SD = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "num_train_timesteps": 1000}


@pytest.mark.parametrize("zero_snr", [False, True])
@pytest.mark.parametrize("schedule", ["scaled_linear", "linear", "squaredcos_cap_v2"])
def test_alphas_match_diffusers(schedule, zero_snr):
    from diffusers import DDPMScheduler

    config = {**SD, "beta_schedule": schedule, "rescale_betas_zero_snr": zero_snr}
    ours = schedule_from_config(config)
    theirs = DDPMScheduler(beta_start=config["beta_start"], beta_end=config["beta_end"], beta_schedule=schedule,
                           rescale_betas_zero_snr=zero_snr)
    assert (ours.signal[-1] == 0) == zero_snr
    # diffusers rescales in float32: 1 − ᾱ_0 keeps about three digits there
    tolerance, beta_atol = (1e-3, 1e-6) if zero_snr else (1e-5, 1e-8)
    assert np.allclose(ours.alphas_cumprod, theirs.alphas_cumprod.double().numpy(), rtol=tolerance, atol=1e-7)
    assert np.allclose(ours.betas, theirs.betas.double().numpy(), rtol=tolerance, atol=beta_atol)


def test_noised_is_the_formula_with_a_fixed_epsilon():
    fs = schedule_from_config(SD)
    x0 = np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4).astype(np.float32)
    t = 500
    eps = np.random.default_rng(3).standard_normal(x0.shape).astype(np.float32)
    a = fs.alphas_cumprod[t]
    assert np.allclose(fs.noised(x0, t, seed=3), math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, atol=1e-6)
    assert np.array_equal(fs.noised(x0, t, seed=3), fs.noised(x0, t, seed=3))
    assert fs.snr[0] > 100 > fs.snr[500] > fs.snr[999]
    with pytest.raises(ValueError):
        fs.noised(x0, 1000)


def test_flow_matching_schedule_with_shift():
    fs = schedule_from_config({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0})
    assert fs.kind == "flow" and fs.betas is None
    sigma = fs.noise[499]
    assert math.isclose(sigma, 3 * 0.5 / (1 + 2 * 0.5)) and math.isclose(fs.signal[499], 1 - sigma)
    assert fs.noise[-1] == 1.0


@pytest.mark.parametrize("strength,steps,run", [(0.0, 20, 0), (1.0, 20, 20), (0.5, 20, 10), (0.51, 20, 11), (0.3, 7, 3)])
def test_img2img_runs_ceil_of_strength_times_steps(strength, steps, run):
    assert img2img_start(strength, steps)[0] == run


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
def test_img2img_start_t_is_the_samplers_first_timestep(spacing, strength):
    from diffusers import DDIMScheduler

    from engine.forward import img2img_start_t

    config = {**SD, "timestep_spacing": spacing, "steps_offset": 1}
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              timestep_spacing=spacing, steps_offset=1)
    scheduler.set_timesteps(25)
    run = img2img_start(strength, 25)[0]
    assert img2img_start_t(config, strength, 25) == int(scheduler.timesteps[25 - run])
    assert img2img_start_t(config, 0.0, 25) is None
