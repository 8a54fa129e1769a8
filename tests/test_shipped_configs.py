"""The configurations shipped for single files: complete, the reference models' sizes, CLIP's own tokenizer, found
offline after the Hugging Face cache, and rebuilt when damaged."""

from __future__ import annotations

import json

import pytest

from engine import shipped_configs
from engine.families.flux import CONFIG_DEV, CONFIG_SCHNELL
from engine.families.sd import CONFIG_SD1, CONFIG_SD2
from engine.families.sd3 import CONFIG_SD3_MEDIUM, CONFIG_SD35_LARGE, CONFIG_SD35_MEDIUM
from engine.families.sdxl import CONFIG_SDXL
from engine.loader import local_config, missing_config_files

#: Parameters of the reference models' parts (unet, vae, text_encoder, text_encoder_2), as published.
SIZES = {
    CONFIG_SD1: (859_520_964, 83_653_863, 123_060_480),
    CONFIG_SD2: (865_910_724, 83_653_863, 340_387_840),
    CONFIG_SDXL: (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
}


#: Published parameter counts of the flow families' parts, and the layer count of each transformer.
T5_XXL_ENCODER = 4_762_310_656
VAE_16 = 83_819_683
FLOW = {
    CONFIG_SD3_MEDIUM: ("transformer", 24, 2_028_328_000),
    CONFIG_SD35_MEDIUM: ("transformer", 24, None),
    CONFIG_SD35_LARGE: ("transformer", 38, None),
    CONFIG_DEV: ("transformer", 19, 11_901_408_320),
    CONFIG_SCHNELL: ("transformer", 19, 11_891_178_560),
}


def test_every_configuration_a_family_names_ships():
    assert shipped_configs.shipped_repos() == sorted([*SIZES, *FLOW])


@pytest.mark.parametrize("repo", sorted(SIZES))
def test_a_shipped_configuration_is_complete_and_the_reference_size(repo):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = shipped_configs.shipped_config(repo)
    assert missing_config_files(folder) == []

    def count(model):
        return sum(p.numel() for p in model.parameters())

    with torch.device("meta"):  # shapes only: no memory, no weights
        parts = [count(UNet2DConditionModel.from_config(json.loads((folder / "unet/config.json").read_text()))),
                 count(AutoencoderKL.from_config(json.loads((folder / "vae/config.json").read_text()))),
                 count(CLIPTextModel(CLIPTextConfig.from_json_file(folder / "text_encoder/config.json")))]
        if (folder / "text_encoder_2").is_dir():
            config = CLIPTextConfig.from_json_file(folder / "text_encoder_2/config.json")
            parts.append(count(CLIPTextModelWithProjection(config)))
    assert tuple(parts) == SIZES[repo]


@pytest.mark.parametrize("repo", sorted(FLOW))
def test_a_flow_configuration_is_complete_and_the_reference_size(repo):
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import T5Config, T5EncoderModel

    folder = shipped_configs.shipped_config(repo)
    assert missing_config_files(folder) == []
    index = json.loads((folder / "model_index.json").read_text())
    t5 = "text_encoder_3" if "text_encoder_3" in index else "text_encoder_2"
    config = json.loads((folder / "transformer/config.json").read_text())
    cls = FluxTransformer2DModel if index["_class_name"] == "FluxPipeline" else SD3Transformer2DModel
    with torch.device("meta"):
        transformer = cls.from_config(config)
        vae = AutoencoderKL.from_config(json.loads((folder / "vae/config.json").read_text()))
        encoder = T5EncoderModel(T5Config.from_json_file(folder / t5 / "config.json"))
    _, layers, size = FLOW[repo]
    assert transformer.config.num_layers == layers
    if size is not None:
        assert sum(p.numel() for p in transformer.parameters()) == size
    assert sum(p.numel() for p in vae.parameters()) == VAE_16
    assert sum(p.numel() for p in encoder.parameters()) == T5_XXL_ENCODER


def test_the_t5_tokenizer_is_t5s():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(shipped_configs.shipped_config(CONFIG_DEV) / "tokenizer_2"))
    assert len(tok) == 32100 and tok.pad_token_id == 0 and tok.eos_token_id == 1
    # T5's own documented example
    assert tok("translate English to German: The house is wonderful.").input_ids == [
        13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]


@pytest.mark.parametrize(("repo", "tokenizer", "pad"), [(CONFIG_SD1, "tokenizer", 49407), (CONFIG_SD2, "tokenizer", 0),
                                                        (CONFIG_SDXL, "tokenizer_2", 0)])
def test_tokenizers_are_clips(repo, tokenizer, pad):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(shipped_configs.shipped_config(repo) / tokenizer))
    assert len(tok) == 49408
    # CLIP's own example: the ids every CLIP text encoder was trained on
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.pad_token_id == pad and tok.model_max_length == 77


def test_the_hugging_face_cache_comes_first_then_the_shipped_copy(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hf" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    shipped = local_config(CONFIG_SD1)
    assert shipped == shipped_configs.shipped_config(CONFIG_SD1) and shipped.is_relative_to(tmp_path / "darkroom-home")

    snapshot = hub / "models--stable-diffusion-v1-5--stable-diffusion-v1-5" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    assert local_config(CONFIG_SD1) == snapshot
    assert local_config("someone/unknown-model") is None


def test_a_damaged_copy_is_built_again(tmp_path):
    folder = shipped_configs.shipped_config(CONFIG_SDXL)
    (folder / "tokenizer_2" / "vocab.json").write_text("{")
    (folder / ".darkroom-config").write_text("old")
    again = shipped_configs.shipped_config(CONFIG_SDXL)
    assert again == folder and len(json.loads((again / "tokenizer_2" / "vocab.json").read_text())) == 49408
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no build folder left
