"""Single files of SD3 and Flux: a transformer-only file takes the other parts from the configuration folder in
the Hugging Face cache, an optional T5 may be missing, a required part that is nowhere is named, and detection
works on original and diffusers key names. Nothing reaches the network (the ``no_network`` fixture)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ModelNotFoundError, ModelUnsupportedError
from engine.families.flux import CONFIG_DEV, CONFIG_SCHNELL
from engine.families.sd3 import CONFIG_SD3_MEDIUM, CONFIG_SD35_LARGE, CONFIG_SD35_MEDIUM
from engine.loader import checkpoint_family, load_model
from engine.models import resolve
from engine.single_file import tensor_shapes
from tests.engine_helpers import Recorder, make_engine, request_for
from tests.test_loader import cpu, no_network  # noqa: F401 - fixtures


def transformer_file(folder, target):
    """The folder's transformer alone, as one file in diffusers' key names (how such files are shared)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(next((folder / "transformer").glob("*.safetensors"))))
    save_file(weights, str(target))
    return target


def plant(source, repo, hub_cache, weightless=()):
    """``source`` as a full download of ``repo`` in a Hugging Face cache: weights too, except for the
    ``weightless`` components (their configuration only)."""
    snapshot = hub_cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    shutil.copytree(source, snapshot, ignore=lambda d, names: [
        n for n in names if Path(d).name in weightless and n.endswith(".safetensors")])
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    return snapshot


def pixels(model, cfg):
    rec = Recorder()
    engine = make_engine(rec)
    try:
        job = engine.submit(request_for(model, steps=2, cfg=cfg))
        rec.wait_for(job)
    finally:
        assert engine.shutdown(timeout=10)
    from engine.events import Failed, ImageReady

    assert not rec.of(job, Failed), rec.of(job, Failed)
    return rec.of(job, ImageReady)[0].image


@pytest.mark.parametrize(("fixture", "repo"), [("tiny_flux_dir", CONFIG_DEV), ("tiny_sd3_dir", CONFIG_SD3_MEDIUM)])
def test_a_transformer_file_takes_the_rest_from_the_cached_model(fixture, repo, tiny_flux_dir, tiny_sd3_dir, tmp_path,
                                                                 no_network):
    folder = tiny_flux_dir if fixture == "tiny_flux_dir" else tiny_sd3_dir  # both built before the thread check
    plant(folder, repo, tmp_path / "empty-hf" / "hub")
    single = transformer_file(folder, tmp_path / "transformer-only.safetensors")
    assert checkpoint_family(tensor_shapes(single))[1] == repo
    cfg = 3.5 if fixture == "tiny_flux_dir" else 4.0
    assert np.array_equal(pixels(single, cfg), pixels(folder, cfg))
    assert no_network == []


def test_sd3_runs_without_t5_when_neither_file_nor_configuration_has_it(tiny_sd3_dir, cpu, tmp_path,  # noqa: F811
                                                                       no_network):
    plant(tiny_sd3_dir, CONFIG_SD3_MEDIUM, tmp_path / "empty-hf" / "hub", weightless=("text_encoder_3",))
    single = transformer_file(tiny_sd3_dir, tmp_path / "sd3.safetensors")
    model = load_model(resolve(str(single)), cpu)
    assert model.family.t5 is None and model.family.pipeline.text_encoder_3 is None


def test_a_missing_required_part_is_named_with_what_to_download(tiny_flux_dir, cpu, tmp_path,  # noqa: F811
                                                                no_network):
    plant(tiny_flux_dir, CONFIG_DEV, tmp_path / "empty-hf" / "hub", weightless=("text_encoder_2",))
    single = transformer_file(tiny_flux_dir, tmp_path / "flux.safetensors")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(resolve(str(single)), cpu)
    message = info.value.message
    assert "holds only part of a Flux.1 model" in message and "second text encoder" in message
    assert message.endswith(f"darkroom models download {CONFIG_DEV}") and no_network == []


def test_a_configuration_never_chooses_arbitrary_classes(tmp_path):
    from engine.single_file import _load_component

    for spec in (["transformers", "AutoTokenizer"], ["os", "system"], ["diffusers", "DiffusionPipeline"]):
        with pytest.raises(ModelUnsupportedError, match="not a model class"):
            _load_component(spec, tmp_path, None)


def test_families_read_diffusers_key_names():
    sd3 = {"transformer_blocks.0.attn.add_k_proj.weight": (64, 64), "pos_embed.pos_embed": (1, 192 * 192, 64)}
    assert checkpoint_family(sd3)[1] == CONFIG_SD3_MEDIUM
    assert checkpoint_family({**sd3, "transformer_blocks.3.attn2.to_q.weight": (1,)})[1] == CONFIG_SD35_MEDIUM
    assert checkpoint_family({**sd3, "pos_embed.pos_embed": (1, 384 * 384, 64)})[1] == CONFIG_SD35_MEDIUM
    assert checkpoint_family({**sd3, "transformer_blocks.37.ff.net.2.weight": (1,)})[1] == CONFIG_SD35_LARGE
    flux = {"single_transformer_blocks.0.attn.norm_k.weight": (128,), "x_embedder.weight": (3072, 64)}
    assert checkpoint_family(flux)[1] == CONFIG_SCHNELL
    assert checkpoint_family({**flux, "time_text_embed.guidance_embedder.linear_1.bias": (1,)})[1] == CONFIG_DEV
    with pytest.raises(ModelUnsupportedError, match="Flux.1 Fill"):
        checkpoint_family({**flux, "x_embedder.weight": (3072, 384)})
