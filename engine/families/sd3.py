"""Stable Diffusion 3 and 3.5: an MMDiT transformer over 16-channel latents in 2×2 patches, flow matching with
a fixed shift (3.0), conditioned on three text encoders: CLIP-L and CLIP-G (penultimate states side by side,
pooled outputs joined) and T5, whose states follow CLIP's in the sequence.

T5 is optional: a model folder without its ``text_encoder_3`` weights, or a single file without T5, runs with
zeros in its place, as diffusers does (less prompt-following, about 9 GB less memory)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from .base import Conditioning, Family, LatentFormat, as_float, vae_scale_factor
from .components import load_pipeline, move, vae_decode
from .flow import check_flow, flow_schedule, prefer_bfloat16
from .text_encoders import ClipText, chunk_texts, encode_chunks, t5_hidden

log = logging.getLogger(__name__)

#: Linear latent → RGB factors and bias for the SD3 VAE (ComfyUI's ``SD3`` latent format; rows: latent channels),
#: applied to the model-space latent (after shift and scale).
PREVIEW_FACTORS = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
)
PREVIEW_BIAS = (0.2394, 0.2135, 0.1925)

#: T5 tokens of SD3's conditioning (diffusers' default ``max_sequence_length``).
T5_TOKENS = 256

#: Configuration repositories for single files, by variant.
CONFIG_SD3_MEDIUM = "stabilityai/stable-diffusion-3-medium-diffusers"
CONFIG_SD35_LARGE = "stabilityai/stable-diffusion-3.5-large"
CONFIG_SD35_MEDIUM = "stabilityai/stable-diffusion-3.5-medium"

_T5 = ("text_encoder_3", "tokenizer_3")
_POS_EMBED = ("model.diffusion_model.pos_embed", "pos_embed", "pos_embed.pos_embed")
_DIFFUSERS_JOINT = "transformer_blocks.0.attn.add_k_proj.weight"
_JOINT = ("model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
          "joint_blocks.0.context_block.adaLN_modulation.1.bias")


def _pipeline_class():
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline


def has_t5_weights(folder: Path) -> bool:
    return any((folder / "text_encoder_3").glob("*.safetensors"))


class StableDiffusion3(Family):
    name = "sd3"
    title = "Stable Diffusion 3"
    pipelines = ("StableDiffusion3Pipeline",)
    # T5 (text_encoder_3) is optional and checked by load_folder.
    weight_components = ("transformer", "vae", "text_encoder", "text_encoder_2")
    denoiser_component = "transformer"
    size_multiple = 16  # 8× VAE, 2×2 patches
    recommended_settings = {"steps": 28, "cfg": 4.5, "sampler": "Euler"}

    cpu_text_encoder = "text_encoder_3"
    #: Where a single file keeps each part besides the transformer (files hold anything from the transformer
    #: alone to the whole pipeline).
    single_file_prefixes = {"vae": ("first_stage_model.", "vae."), "text_encoder": ("text_encoders.clip_l.",),
                            "text_encoder_2": ("text_encoders.clip_g.",), "text_encoder_3": ("text_encoders.t5xxl.",)}

    @classmethod
    def checkpoint_config(cls, keys: Collection[str]) -> str | None:
        """Original (MMDiT) key names, with or without ``model.diffusion_model.``, or diffusers' own."""
        shapes = keys if isinstance(keys, Mapping) else {}
        if any(k in keys for k in _JOINT):
            large = any(k.endswith("joint_blocks.37.x_block.mlp.fc1.weight") for k in keys)
            dual = any(".x_block.attn2." in k for k in keys)  # 3.5 medium's dual attention layers
        elif _DIFFUSERS_JOINT in keys and "pos_embed.pos_embed" in keys:
            large = "transformer_blocks.37.ff.net.2.weight" in keys
            dual = any(k.startswith("transformer_blocks.") and ".attn2." in k for k in keys)
        else:
            return None
        if large:
            return CONFIG_SD35_LARGE
        pos = next((shapes[k] for k in _POS_EMBED if k in shapes), None)
        # SD3.5 medium learned position embeddings for 384×384 patches (SD3 medium: 192×192).
        if dual or (pos is not None and len(pos) > 1 and pos[1] == 384 * 384):
            return CONFIG_SD35_MEDIUM
        return CONFIG_SD3_MEDIUM

    @classmethod
    def recommended(cls, denoiser_config: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(cls.recommended_settings)
        if denoiser_config.get("num_layers") == 38:  # 3.5 large
            values["cfg"] = 3.5
        elif denoiser_config.get("dual_attention_layers"):  # 3.5 medium
            values["steps"] = 40
        return values

    @classmethod
    def load_folder(cls, folder: Path, device) -> "StableDiffusion3":
        device = prefer_bfloat16(device)
        options: dict[str, Any] = {}
        if not has_t5_weights(folder):
            log.info("%s has no T5 weights (text_encoder_3); running without T5", folder.name)
            options = dict.fromkeys(_T5)
        return cls(load_pipeline(_pipeline_class(), folder, device, {**cls.load_options, **options}), device)

    @classmethod
    def load_single_file(cls, path: Path, config: Path, device) -> "StableDiffusion3":
        from ..single_file import missing_parts, tensor_shapes

        device = prefer_bfloat16(device)
        options = missing_parts(path, config, cls.title, tensor_shapes(path), cls.single_file_prefixes, device.dtype,
                                optional={"text_encoder_3": _T5})
        return cls(load_pipeline(_pipeline_class(), path, device, {**cls.load_options, **options}, config), device)

    def __init__(self, pipe, device) -> None:
        super().__init__(device)
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.pipeline = pipe
        self.clips = [ClipText(pipe.tokenizer, pipe.text_encoder, "clip_l"),
                      ClipText(pipe.tokenizer_2, pipe.text_encoder_2, "clip_g")]
        self.t5 = (pipe.tokenizer_3, pipe.text_encoder_3) if pipe.text_encoder_3 is not None else None
        move({"transformer": self.transformer, "vae": self.vae, "clip_l": pipe.text_encoder,
              "clip_g": pipe.text_encoder_2, "t5": pipe.text_encoder_3}, device.device)
        self.scheduler_config = dict(pipe.scheduler.config)
        check_flow(self.scheduler_config, self.title)
        self.prediction = "flow"
        self.joint_attention_dim = int(self.transformer.config.joint_attention_dim)
        self.latent_format = LatentFormat(
            channels=self.transformer.config.in_channels,
            scaling_factor=as_float(self.vae.config.scaling_factor, 1.5305),
            shift=as_float(getattr(self.vae.config, "shift_factor", None)),
            vae_scale_factor=vae_scale_factor(self.vae),
            preview_factors=PREVIEW_FACTORS,
            preview_bias=PREVIEW_BIAS,
        )

    @property
    def denoiser(self):
        return self.transformer

    def _embed(self, text: str, row, vectors):
        """(sequence embeddings, pooled embeddings) of one prompt: [CLIP-L ‖ CLIP-G, padded to T5's width; T5].
        ``row``: the prompt's CLIP chunks per encoder (A1111's syntax read); T5 reads the plain words."""
        import torch

        device = self.device.device
        hidden, pooled = [], []
        for clip, chunks, clip_vectors in zip(self.clips, row, vectors):
            states, projected = encode_chunks(clip, chunks, device, penultimate=True, vectors=clip_vectors)
            hidden.append(states)
            pooled.append(projected)
        dtype = self.transformer.dtype
        clip = torch.cat(hidden, dim=-1).to(dtype)
        if self.t5 is not None:
            t5 = t5_hidden(*self.t5, text, device, T5_TOKENS).to(dtype)
        else:
            t5 = torch.zeros((1, T5_TOKENS, self.joint_attention_dim), dtype=dtype, device=device)
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return torch.cat([clip, t5], dim=-2), torch.cat(pooled, dim=-1).to(dtype)

    def encode(self, prompt: str, negative_prompt: str, cfg: bool, height: int, width: int) -> Conditioning:
        import torch

        texts = [prompt, negative_prompt] if cfg else [prompt]
        chunked = chunk_texts(self.clips, texts)
        with torch.inference_mode():
            embeds, pooled = self._embed(prompt, chunked.rows[0], chunked.vectors)
            if cfg:
                negative, negative_pooled = self._embed(negative_prompt, chunked.rows[1], chunked.vectors)
                embeds = torch.cat([negative, embeds])
                pooled = torch.cat([negative_pooled, pooled])
        return Conditioning({"embeds": embeds, "pooled": pooled}, cfg)

    def schedule(self, sampler, steps: int, height: int, width: int):
        return flow_schedule(sampler, self.scheduler_config, steps, float(self.scheduler_config.get("shift", 3.0)),
                             self.title)

    def scheduler_for(self, sampler):
        from .. import samplers

        return samplers.for_flow(sampler.name).make(self.scheduler_config,
                                                     float(self.scheduler_config.get("shift", 3.0)))

    def model_inputs(self, x, t, cond: Conditioning):
        tensors = cond.tensors
        return (x,), {"encoder_hidden_states": tensors["embeds"], "pooled_projections": tensors["pooled"],
                      "timestep": t.expand(x.shape[0]), "return_dict": False}

    def decode(self, latents, half_first: bool = False):
        return vae_decode(self.vae, latents, self.latent_format, half_first)
