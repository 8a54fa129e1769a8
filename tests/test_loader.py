import json
import shutil

import numpy as np
import pytest

from engine import models, paths
from engine.devices import choose_device
from engine.errors import ModelCorruptError, ModelNotFoundError, ModelUnsupportedError
from engine.loader import check_safetensors, load_model, model_hash
from engine.models import resolve
from engine.request import build_request
from engine.sampling import decode, denoise, encode
from tests.ldm_checkpoint import export_single_file

CPU = None


@pytest.fixture(scope="module")
def cpu():
    return choose_device("cpu")


def generate(model, seed=3):
    request = build_request(prompt="cat", seed=seed, steps=3, width=64, height=64, scheduler="DDIM").request
    cond = encode(model, request, 64, 64)
    latents = denoise(model, request, cond, seed, lambda s: None, lambda: False)
    return decode(model, latents)[0]


def test_folder_loads_with_family_hash_and_default_preview(tiny_model_dir, cpu):
    model = load_model(resolve(str(tiny_model_dir)), cpu)
    assert model.family == "sd" and model.name == "tiny-sd"
    assert len(model.model_hash) == 10 and model.model_hash == model_hash(model.entry)
    assert model.preview.factors[0] == (0.3512, 0.2297, 0.3227)
    assert str(model.pipe.unet.dtype) == "torch.float32"


def test_single_file_checkpoint_gives_same_pixels_as_its_folder(tiny_model_dir, cpu, tmp_path):
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    from_folder = load_model(resolve(str(tiny_model_dir)), cpu)
    from_file = load_model(resolve(str(single)), cpu, config_dir=tiny_model_dir)
    assert from_file.family == "sd" and from_file.name == "tiny"
    assert np.array_equal(generate(from_folder), generate(from_file))


def test_single_file_without_local_config_explains_what_to_do(tiny_model_dir, cpu, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(resolve(str(single)), cpu)
    assert "darkroom models download stable-diffusion-v1-5/stable-diffusion-v1-5 --config-only" in info.value.message


@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "bad_header_json"])
def test_corrupt_safetensors_is_reported_as_damaged(tiny_model_dir, cpu, tmp_path, damage):
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    data = single.read_bytes()
    broken = {
        "random": np.random.default_rng(0).bytes(4096),
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "bad_header_json": (20).to_bytes(8, "little") + b"{not json at all!!!}" + data[28:],
    }[damage]
    single.write_bytes(broken)
    with pytest.raises(ModelCorruptError) as info:
        load_model(resolve(str(single)), cpu)
    assert "damaged or incomplete" in info.value.message
    with pytest.raises(ModelCorruptError):
        check_safetensors(single)


def test_pickle_checkpoints_are_refused_without_opening(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelUnsupportedError) as info:
        resolve(str(ckpt))
    assert ".safetensors" in info.value.message


def test_folder_without_model_index_or_of_other_family(tmp_path, cpu, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnsupportedError):
        resolve(str(tmp_path / "empty"))
    other = tmp_path / "flux"
    shutil.copytree(tiny_model_dir, other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "FluxPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelUnsupportedError) as info:
        load_model(resolve(str(other)), cpu)
    assert "FluxPipeline" in info.value.message


def test_damaged_model_index_and_missing_component(tmp_path, cpu, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model_index.json").write_text("{ nope")
    with pytest.raises(ModelCorruptError):
        load_model(resolve(str(broken)), cpu)
    missing = tmp_path / "missing"
    shutil.copytree(tiny_model_dir, missing)
    (missing / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelCorruptError) as info:
        load_model(resolve(str(missing)), cpu)
    assert "vae" in info.value.message


def test_model_ships_its_own_preview_factors(tmp_path, cpu, tiny_model_dir):
    own = tmp_path / "own"
    shutil.copytree(tiny_model_dir, own)
    factors = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]
    (own / "preview.json").write_text(json.dumps({"factors": factors, "bias": [0.5, 0, 0]}))
    assert load_model(resolve(str(own)), cpu).preview.factors[3] == (1.0, 1.1, 1.2)
    (own / "preview.json").write_text(json.dumps({"factors": "evil", "bias": [1e999]}))
    assert load_model(resolve(str(own)), cpu).preview.factors[0] == (0.3512, 0.2297, 0.3227)


def test_resolve_default_names_and_hub_hint(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setattr(paths, "BUNDLED_MODELS", tmp_path / "no-bundled")
    with pytest.raises(ModelNotFoundError) as info:
        resolve("")
    assert info.value.message == models.NO_MODEL_MESSAGE
    user = paths.models_dir()
    user.mkdir(parents=True)
    shutil.copytree(tiny_model_dir, user / "Mine")
    assert resolve("").name == "Mine"
    assert resolve("mine").path == user / "Mine"
    with pytest.raises(ModelNotFoundError) as info:
        resolve("someone/some-model")
    assert "darkroom models download someone/some-model" in info.value.message


def test_bundled_default_model_leads_the_list(tmp_path, monkeypatch, tiny_model_dir):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    shutil.copytree(tiny_model_dir, bundled / "aaa")
    shutil.copytree(tiny_model_dir, bundled / models.DEFAULT_BUNDLED)
    monkeypatch.setattr(paths, "BUNDLED_MODELS", bundled)
    names = [e.name for e in models.available_models()]
    assert names[0] == models.DEFAULT_BUNDLED and "aaa" in names


class _OverflowingVae:
    """Decodes to NaN in half precision (as SD VAEs can), correctly in float32."""

    def __init__(self):
        import torch

        self.dtype = torch.float16
        self.config = type("Config", (), {"scaling_factor": 0.5, "shift_factor": None, "force_upcast": False})()
        self.calls = []

    def to(self, dtype):
        self.dtype = dtype
        return self

    def decode(self, latents, return_dict=False):
        import torch

        self.calls.append(latents.dtype)
        out = torch.zeros(1, 3, 8, 8, dtype=self.dtype)
        return (out * float("nan") if self.dtype == torch.float16 else out + 0.5,)


def test_half_precision_overflow_is_redecoded_in_float32_never_black():
    from types import SimpleNamespace

    import torch

    vae = _OverflowingVae()
    model = SimpleNamespace(pipe=SimpleNamespace(vae=vae))
    image, notes = decode(model, torch.zeros(1, 4, 1, 1))
    assert vae.calls == [torch.float16, torch.float32] and vae.dtype == torch.float32
    assert image.dtype == np.uint8 and (image == 191).all()  # (0.5/2 + 0.5) * 255, not a black square
    assert notes and "full precision" in notes[0]
