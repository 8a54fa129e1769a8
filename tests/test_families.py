"""Model families: the registry, what each family reads off a model, its prompt encoding, and that loading one
family's model imports nothing of another's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import families
from engine.devices import choose_device
from engine.families.sd import StableDiffusion
from engine.families.sdxl import StableDiffusionXL, time_ids
from engine.loader import load_model
from engine.models import native_size, resolve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cpu():
    return choose_device("cpu")


def test_registry_finds_families_by_pipeline_and_name():
    assert families.for_pipeline("StableDiffusionPipeline") is StableDiffusion
    assert families.for_pipeline("StableDiffusionXLPipeline") is StableDiffusionXL
    assert families.for_pipeline("KandinskyPipeline") is None and families.for_pipeline("") is None
    assert families.by_name("sdxl") is StableDiffusionXL
    with pytest.raises(KeyError):
        families.by_name("kandinsky")
    names = [f.name for f in families.FAMILIES]
    pipelines = [p for f in families.FAMILIES for p in f.pipelines]
    assert len(set(names)) == len(names) and len(set(pipelines)) == len(pipelines)


def test_families_read_their_model(tiny_model_dir, tiny_sdxl_dir, cpu):
    sd = load_model(resolve(str(tiny_model_dir)), cpu).family
    assert isinstance(sd, StableDiffusion) and sd.denoiser is sd.unet
    assert sd.prediction == "epsilon" and sd.scheduler_config["_class_name"] == "DDIMScheduler"
    fmt = sd.latent_format
    assert (fmt.channels, fmt.scaling_factor, fmt.shift, fmt.vae_scale_factor) == (4, 0.18215, 0.0, 8)
    assert sd.noise_shape(32, 48) == (1, 4, 4, 6)
    noise = sd.initial_noise(9, 32, 48)
    assert noise.shape == (1, 4, 4, 6) and torch.equal(noise, sd.initial_noise(9, 32, 48))
    xl = load_model(resolve(str(tiny_sdxl_dir)), cpu).family
    assert isinstance(xl, StableDiffusionXL) and xl.latent_format.preview_bias == (0.1084, -0.0175, -0.0011)
    assert native_size(str(tiny_model_dir)) == (64, 64) and native_size(str(tiny_sdxl_dir)) == (64, 64)


def test_v_prediction_is_read_from_the_scheduler_config(tiny_model_dir, cpu, tmp_path):
    import shutil

    from engine.errors import ModelUnsupportedError

    model = tmp_path / "v"
    shutil.copytree(tiny_model_dir, model)
    config_file = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    assert load_model(resolve(str(model)), cpu).family.prediction == "v_prediction"
    config_file.write_text(json.dumps({**config, "prediction_type": "sample"}))
    with pytest.raises(ModelUnsupportedError) as info:
        load_model(resolve(str(model)), cpu)
    assert "'sample'" in info.value.message


def test_sdxl_conditioning_has_its_own_time_ids_and_zeros_for_an_empty_negative(tiny_sdxl_dir, cpu):
    assert time_ids(832, 1216) == [832, 1216, 0, 0, 832, 1216]
    xl = load_model(resolve(str(tiny_sdxl_dir)), cpu).family
    cond = xl.encode("a red apple", "", True, 32, 48)
    embeds, pooled, ids = cond.tensors["embeds"], cond.tensors["text_embeds"], cond.tensors["time_ids"]
    assert embeds.shape == (2, 77, 64) and pooled.shape == (2, 32)
    assert ids.tolist() == [[32, 48, 0, 0, 32, 48]] * 2 and ids.dtype == embeds.dtype
    assert not embeds[0].any() and not pooled[0].any() and embeds[1].any()
    negative = xl.encode("a red apple", "blurry", True, 32, 48)
    assert negative.tensors["embeds"][0].any() and torch.equal(negative.tensors["embeds"][1], embeds[1])
    single = xl.encode("a red apple", "", False, 32, 48)
    assert single.tensors["embeds"].shape[0] == 1 and not single.cfg


def test_sd_conditioning_puts_the_negative_prompt_first(tiny_model_dir, cpu):
    sd = load_model(resolve(str(tiny_model_dir)), cpu).family
    cond = sd.encode("a red apple", "", True, 64, 64)
    alone = sd.encode("a red apple", "", False, 64, 64)
    assert cond.cfg and cond.tensors["embeds"].shape == (2, 77, 32)
    assert torch.equal(cond.tensors["embeds"][1:], alone.tensors["embeds"])
    assert not torch.equal(cond.tensors["embeds"][0], cond.tensors["embeds"][1])


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(sorted(sys.modules))"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return set(eval(proc.stdout.strip().splitlines()[-1]))


def test_the_registry_imports_no_model_library():
    loaded = _modules_after("import engine.families, engine.loader, engine.sampling")
    assert not {"torch", "diffusers", "transformers"} & loaded


def test_loading_one_family_imports_not_the_other(tiny_model_dir, tiny_sdxl_dir):
    code = ("from engine.devices import choose_device\nfrom engine.loader import load_model\n"
            "from engine.models import resolve\nload_model(resolve({!r}), choose_device('cpu'))")
    sd_only = _modules_after(code.format(str(tiny_model_dir)))
    assert "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion" in sd_only
    assert "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl" not in sd_only
    xl_only = _modules_after(code.format(str(tiny_sdxl_dir)))
    assert "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl" in xl_only
    assert "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion" not in xl_only
