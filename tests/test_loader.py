import json
import shutil

import numpy as np
import pytest

from engine import models, paths
from engine.devices import choose_device
from engine.errors import ModelCorruptError, ModelNotFoundError, ModelUnsupportedError
from engine.families.base import LatentFormat
from engine.families.components import vae_decode
from engine.loader import check_safetensors, load_model, model_hash
from engine.models import resolve
from engine.request import build_request
from engine.sampling import denoise
from tests.ldm_checkpoint import export_single_file


@pytest.fixture(scope="module")
def cpu():
    return choose_device("cpu")


def generate(model, seed=3):
    request = build_request(prompt="cat", seed=seed, steps=3, width=64, height=64, sampler="DDIM").request
    cond = model.family.encode(request.prompt, request.negative_prompt, True, 64, 64)
    latents = denoise(model, request, cond, seed, lambda s: None, lambda: False)
    return model.family.decode(latents)[0]


def test_folder_loads_with_family_hash_and_default_preview(tiny_model_dir, cpu):
    model = load_model(resolve(str(tiny_model_dir)), cpu)
    assert model.family.name == "sd" and model.name == "tiny-sd"
    assert model.family.prediction == "epsilon" and model.family.latent_format.channels == 4
    assert len(model.model_hash) == 10 and model.model_hash == model_hash(model.entry)
    assert model.preview.factors[0] == (0.3512, 0.2297, 0.3227)
    assert str(model.family.denoiser.dtype) == "torch.float32"


def test_models_load_without_hub_kernels(tiny_model_dir, cpu, monkeypatch):
    """transformers would otherwise swap layers for code fetched from the Hub (and the bundle has no kernels)."""
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    model = load_model(resolve(str(tiny_model_dir)), cpu)
    assert model.family.text_encoder.use_kernels is False


def test_single_file_checkpoint_gives_same_pixels_as_its_folder(tiny_model_dir, cpu, tmp_path):
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    from_folder = load_model(resolve(str(tiny_model_dir)), cpu)
    from_file = load_model(resolve(str(single)), cpu, config_dir=tiny_model_dir)
    assert from_file.family.name == "sd" and from_file.name == "tiny"
    assert np.array_equal(generate(from_folder), generate(from_file))


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache, offline mode off (as for a person who is online), and every way to the
    network failing the test: a single file must load from disk or say what is missing, never download."""
    import socket

    import huggingface_hub
    import huggingface_hub.constants
    from diffusers.loaders import single_file

    attempts = []

    def refuse(name):
        def call(*args, **kwargs):
            attempts.append(name)
            raise AssertionError(f"{name} was called: the loader tried to reach the network")

        return call

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for module, name in ((huggingface_hub, "snapshot_download"), (huggingface_hub, "hf_hub_download"),
                         (single_file, "snapshot_download")):
        monkeypatch.setattr(module, name, refuse(name))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return attempts


def test_single_file_without_local_config_says_what_is_missing_offline(tiny_model_dir, cpu, tmp_path, no_network,
                                                                      monkeypatch):
    from engine import shipped_configs

    monkeypatch.setattr(shipped_configs, "SHIPPED_DIR", tmp_path / "nothing-shipped")  # as for SD3 and Flux
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(resolve(str(single)), cpu)
    message = info.value.message
    assert "configuration of stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "not on this computer" in message and "damaged" not in message
    assert message.endswith("darkroom models download stable-diffusion-v1-5/stable-diffusion-v1-5 --config-only")
    assert no_network == []


def _plant_cached_config(source, repo: str, hub_cache, drop: tuple[str, ...] = ()):
    """Put ``source``'s configuration files into a Hugging Face cache laid out as the hub library does."""
    snapshot = hub_cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if path.is_file() and path.suffix != ".safetensors" and str(rel) not in drop:
            (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, snapshot / rel)
    (hub_cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir(parents=True)
    (hub_cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0123abc")
    return snapshot


def test_single_file_finds_its_config_in_the_local_cache_only(tiny_model_dir, cpu, tmp_path, no_network):
    import huggingface_hub.constants

    hub_cache = tmp_path / "empty-hf" / "hub"
    repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    _plant_cached_config(tiny_model_dir, repo, hub_cache)
    assert huggingface_hub.constants.HF_HUB_CACHE == str(hub_cache)
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    model = load_model(resolve(str(single)), cpu)
    assert model.family.name == "sd" and no_network == []
    assert np.array_equal(generate(model), generate(load_model(resolve(str(tiny_model_dir)), cpu)))


def test_incomplete_cached_config_names_the_missing_files(tiny_model_dir, cpu, tmp_path, no_network):
    repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    snapshot = _plant_cached_config(tiny_model_dir, repo, tmp_path / "empty-hf" / "hub",
                                    drop=("unet/config.json", "tokenizer/tokenizer_config.json"))
    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    with pytest.raises(ModelNotFoundError) as info:
        load_model(resolve(str(single)), cpu)
    message = info.value.message
    assert f"configuration in {snapshot} is incomplete" in message
    assert "tokenizer/tokenizer_config.json" in message and "unet/config.json" in message
    assert f"darkroom models download {repo} --config-only" in message and no_network == []


def test_single_file_families_by_tensor_names():
    from engine import families
    from engine.errors import ModelUnsupportedError
    from engine.loader import checkpoint_family

    sd1 = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"]
    sd2 = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.transformer.x"]
    sdxl = ["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.x",
            "conditioner.embedders.1.model.x"]
    assert checkpoint_family(sd1) == (families.by_name("sd"), "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert checkpoint_family(sd2) == (families.by_name("sd"), "stabilityai/stable-diffusion-2-1")
    assert checkpoint_family(sdxl) == (families.by_name("sdxl"), "stabilityai/stable-diffusion-xl-base-1.0")
    for keys in (sd1, sd2, sdxl):  # exactly one family claims each layout
        assert sum(f.checkpoint_config(keys) is not None for f in families.FAMILIES) == 1
    with pytest.raises(ModelUnsupportedError) as info:
        checkpoint_family(["model.diffusion_model.joint_blocks.0.x", "text_encoders.t5xxl.x"])
    assert "Stable Diffusion 1.x, 2.x, SDXL" in info.value.message


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
    other = tmp_path / "kandinsky"
    shutil.copytree(tiny_model_dir, other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "KandinskyPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelUnsupportedError) as info:
        load_model(resolve(str(other)), cpu)
    assert "KandinskyPipeline" in info.value.message


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


def test_a_model_can_ask_for_decoded_previews(tmp_path, cpu, tiny_model_dir):
    """``"decode": true`` makes previews the VAE's decode at the image's size; anything else keeps the linear map."""
    import torch

    own = tmp_path / "own"
    shutil.copytree(tiny_model_dir, own)
    factors = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for flag, expected_size in ((True, 8 * 8), ("yes", 8), (None, 8)):
        data = {"factors": factors, "bias": [0, 0, 0]} | ({} if flag is None else {"decode": flag})
        (own / "preview.json").write_text(json.dumps(data))
        model = load_model(resolve(str(own)), cpu)
        rgb = model.preview.to_rgb(latents)
        assert rgb.shape == (expected_size, expected_size, 3) and rgb.dtype == np.uint8, flag
        if flag is True:
            decoded, _ = model.family.decode(latents[:1])
            assert np.array_equal(rgb, decoded)
        else:
            assert np.array_equal(rgb, model.preview.linear_rgb(latents))


def test_the_bundled_model_previews_the_decoded_picture(cpu):
    import torch

    model = load_model(resolve(models.DEFAULT_BUNDLED), cpu)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert model.preview.to_rgb(latents).shape == (64, 64, 3)


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
    import torch

    vae = _OverflowingVae()
    image, notes = vae_decode(vae, torch.zeros(1, 4, 1, 1), LatentFormat(channels=4, scaling_factor=0.5))
    assert vae.calls == [torch.float16, torch.float32] and vae.dtype == torch.float32
    assert image.dtype == np.uint8 and (image == 191).all()  # (0.5/2 + 0.5) * 255, not a black square
    assert notes and "full precision" in notes[0]


@pytest.fixture(scope="module")
def tiny_xl_two_widths(tmp_path_factory):
    """A tiny SDXL whose text encoders differ in width, as SDXL's do (built before the thread check)."""
    from tests.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("xl") / "tiny-xl", second_width=48)


def test_an_sdxl_single_file_gives_the_same_pixels_as_its_folder(cpu, tmp_path, tiny_xl_two_widths):
    """SDXL's layout: both text encoders under ``conditioner.embedders``, the second in OpenCLIP's names."""
    folder = tiny_xl_two_widths
    single = export_single_file(folder, tmp_path / "tiny-xl.safetensors")
    from_file = load_model(resolve(str(single)), cpu, config_dir=folder)
    assert from_file.family.name == "sdxl"
    assert np.array_equal(generate(load_model(resolve(str(folder)), cpu)), generate(from_file))
