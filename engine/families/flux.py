"""Flux.1 (dev and schnell): a rectified-flow transformer over 16-channel latents packed in 2×2 patches (64
values per token), conditioned on T5's states and CLIP-L's pooled output.

Both are distilled: there is no CFG batch. Dev takes the guidance scale as an input of the network (the
request's CFG scale becomes that value); schnell has no guidance input and ignores it. The schedule's shift
grows with the image's token count (dev) or stays 1 (schnell), as diffusers' FluxPipeline does. The loop sees
unpacked latents (1×16×h×w, so previews and x0 work as for every family); packing happens at the network call."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from .base import Conditioning, Family, LatentFormat, as_float, vae_scale_factor
from .components import load_pipeline, move, vae_decode
from .flow import check_flow, flow_schedule, image_shift, prefer_bfloat16
from .text_encoders import ClipText, pooled_output, t5_hidden

#: Linear latent → RGB factors and bias for the Flux VAE (ComfyUI's ``Flux`` latent format; rows: latent
#: channels), applied to the model-space latent (after shift and scale).
PREVIEW_FACTORS = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
)
PREVIEW_BIAS = (-0.0329, -0.0718, -0.0851)

#: T5 tokens of the conditioning: dev was trained with 512, schnell with 256.
T5_TOKENS_DEV = 512
T5_TOKENS_SCHNELL = 256

CONFIG_DEV = "black-forest-labs/FLUX.1-dev"
CONFIG_SCHNELL = "black-forest-labs/FLUX.1-schnell"

_DOUBLE = ("double_blocks.0.img_attn.norm.key_norm.scale", "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale")
_GUIDANCE = ("guidance_in.in_layer.bias", "model.diffusion_model.guidance_in.in_layer.bias",
             "time_text_embed.guidance_embedder.linear_1.bias")
_IMG_IN = ("img_in.weight", "model.diffusion_model.img_in.weight", "x_embedder.weight")
_DIFFUSERS_SINGLE = "single_transformer_blocks.0.attn.norm_k.weight"


def _pipeline_class():
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    return FluxPipeline


def pack(latents):
    """B×C×H×W → B×(H/2·W/2)×(4C): each 2×2 patch becomes one token."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, height: int, width: int):
    """The inverse of :func:`pack` for latents of ``height`` × ``width`` (latent pixels)."""
    b, _, d = tokens.shape
    x = tokens.view(b, height // 2, width // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, height, width)


def image_ids(height: int, width: int, device, dtype):
    """Position ids (0, row, column) of the tokens of latents of ``height`` × ``width`` latent pixels."""
    import torch

    h, w = height // 2, width // 2
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(h * w, 3).to(device=device, dtype=dtype)


class Flux(Family):
    name = "flux"
    title = "Flux.1"
    pipelines = ("FluxPipeline",)
    weight_components = ("transformer", "vae", "text_encoder", "text_encoder_2")
    denoiser_component = "transformer"
    size_multiple = 16  # 8× VAE, 2×2 packing
    recommended_settings = {"steps": 28, "cfg": 3.5, "sampler": "Euler"}
    #: Schnell: 4 steps, and the CFG scale changes nothing (1 says so).
    recommended_schnell = {"steps": 4, "cfg": 1.0, "sampler": "Euler"}

    cpu_text_encoder = "text_encoder_2"
    #: Where a single file keeps each part besides the transformer (most Flux files hold the transformer alone).
    single_file_prefixes = {"vae": ("first_stage_model.", "vae."), "text_encoder": ("text_encoders.clip_l.",),
                            "text_encoder_2": ("text_encoders.t5xxl.",)}

    @classmethod
    def checkpoint_config(cls, keys: Collection[str]) -> str | None:
        """Black Forest Labs' key names, with or without ``model.diffusion_model.``, or diffusers' own."""
        if any(k in keys for k in _DOUBLE) or _DIFFUSERS_SINGLE in keys:
            shapes = keys if isinstance(keys, Mapping) else {}
            shape = next((shapes[k] for k in _IMG_IN if k in shapes), None)
            if shape is not None and len(shape) == 2 and shape[1] != 64:  # Fill and Depth take extra channels
                from ..errors import ModelUnsupportedError

                variant = {384: "Flux.1 Fill", 128: "Flux.1 Depth"}.get(shape[1], "a Flux.1 variant with extra inputs")
                raise ModelUnsupportedError(f"This checkpoint is {variant}, which Darkroom does not run yet.")
            return CONFIG_DEV if any(k in keys for k in _GUIDANCE) else CONFIG_SCHNELL
        return None

    @classmethod
    def recommended(cls, denoiser_config: Mapping[str, Any]) -> dict[str, Any]:
        if denoiser_config and not denoiser_config.get("guidance_embeds", False):
            return dict(cls.recommended_schnell)
        return dict(cls.recommended_settings)

    @classmethod
    def native_size(cls, folder: Path) -> tuple[int, int]:
        """Flux's transformer has no native size (its positions are rotary); its VAE's config keeps 1024."""
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        size = int(vae.get("sample_size", 1024))
        return size, size

    @classmethod
    def load_folder(cls, folder: Path, device) -> "Flux":
        device = prefer_bfloat16(device)
        return cls(load_pipeline(_pipeline_class(), folder, device, cls.load_options), device)

    @classmethod
    def load_single_file(cls, path: Path, config: Path, device) -> "Flux":
        from ..single_file import missing_parts, tensor_shapes

        device = prefer_bfloat16(device)
        options = missing_parts(path, config, cls.title, tensor_shapes(path), cls.single_file_prefixes, device.dtype)
        return cls(load_pipeline(_pipeline_class(), path, device, {**cls.load_options, **options}, config), device)

    def __init__(self, pipe, device) -> None:
        super().__init__(device)
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.pipeline = pipe
        self.clip = ClipText(pipe.tokenizer, pipe.text_encoder, "clip_l")
        self.t5 = (pipe.tokenizer_2, pipe.text_encoder_2)
        move({"transformer": self.transformer, "vae": self.vae, "clip": pipe.text_encoder, "t5": pipe.text_encoder_2},
             device.device)
        self.scheduler_config = dict(pipe.scheduler.config)
        check_flow(self.scheduler_config, self.title)
        self.prediction = "flow"
        self.guidance_embeds = bool(self.transformer.config.guidance_embeds)
        self.t5_tokens = T5_TOKENS_DEV if self.guidance_embeds else T5_TOKENS_SCHNELL
        self.latent_format = LatentFormat(
            channels=int(self.vae.config.latent_channels),
            scaling_factor=as_float(self.vae.config.scaling_factor, 0.3611),
            shift=as_float(getattr(self.vae.config, "shift_factor", None)),
            vae_scale_factor=vae_scale_factor(self.vae),
            preview_factors=PREVIEW_FACTORS,
            preview_bias=PREVIEW_BIAS,
        )

    @property
    def denoiser(self):
        return self.transformer

    @property
    def extra_input_channels(self) -> int:
        return 0  # the transformer's in_channels count packed 2×2 patches of the latents, nothing more

    def condition(self, request, size: tuple[int, int] | None = None) -> Conditioning:
        """The prompt's conditioning, and for dev the request's CFG scale as the network's guidance input."""
        import torch

        cond = super().condition(request, size)
        if self.guidance_embeds:
            cond.tensors["guidance"] = torch.full((1,), float(request.cfg), dtype=torch.float32,
                                                  device=self.device.device)
        return cond

    def encode(self, prompt: str, negative_prompt: str, cfg: bool, height: int, width: int) -> Conditioning:
        """The prompt alone (no CFG batch: the negative prompt has no place in a distilled model): CLIP-L's pooled
        output of its first chunk (A1111's syntax read; weights do not reach a pooled output) and T5's states of
        its plain words."""
        import torch

        device, dtype = self.device.device, self.transformer.dtype
        f = self.latent_format.vae_scale_factor
        with torch.inference_mode():
            pooled = pooled_output(self.clip, prompt, device).to(dtype)
            embeds = t5_hidden(*self.t5, prompt, device, self.t5_tokens).to(dtype)
        return Conditioning({
            "embeds": embeds,
            "pooled": pooled,
            "txt_ids": torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype),
            "img_ids": image_ids(height // f, width // f, device, dtype),
        }, cfg=False)

    def schedule(self, sampler, steps: int, height: int, width: int):
        f = self.latent_format.vae_scale_factor
        tokens = (height // f // 2) * (width // f // 2)
        return flow_schedule(sampler, self.scheduler_config, steps, image_shift(self.scheduler_config, tokens),
                             self.title, pipeline_sigmas=True)

    def scheduler_for(self, sampler):
        from .. import samplers

        return samplers.for_flow(sampler.name).make(self.scheduler_config,
                                                     float(self.scheduler_config.get("shift", 1.0)))

    def model_inputs(self, x, t, cond: Conditioning):
        tensors = cond.tensors
        batch = x.shape[0]
        guidance = tensors.get("guidance")
        return (pack(x),), {
            "encoder_hidden_states": tensors["embeds"],
            "pooled_projections": tensors["pooled"],
            "timestep": t.expand(batch).to(x.dtype) / 1000,
            "img_ids": tensors["img_ids"],
            "txt_ids": tensors["txt_ids"],
            "guidance": guidance.expand(batch) if guidance is not None else None,
            "return_dict": False,
        }

    def predict(self, x, t, cond: Conditioning, denoiser=None):
        return unpack(super().predict(x, t, cond, denoiser), x.shape[2], x.shape[3])

    def decode(self, latents, half_first: bool = False):
        return vae_decode(self.vae, latents, self.latent_format, half_first)
