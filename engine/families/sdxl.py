"""Stable Diffusion XL: a U-Net conditioned on two CLIP text encoders' penultimate hidden states, the second
encoder's pooled projection, and "time ids" that tell it the image's size and crop (micro-conditioning)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from .base import Conditioning, Family, LatentFormat, as_float, check_prediction, vae_scale_factor
from .components import load_pipeline, move, vae_decode, vae_encode
from .text_encoders import ClipText, chunk_texts, encode_chunks

#: Linear latent → RGB factors and bias fitted for the SDXL VAE (rows: latent channels).
PREVIEW_FACTORS = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                   (-0.3165, -0.2492, -0.2188))
PREVIEW_BIAS = (0.1084, -0.0175, -0.0011)

CONFIG_SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def _pipeline_class():
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline


def time_ids(height: int, width: int) -> list[int]:
    """SDXL's micro-conditioning for a full, uncropped image made at its own size: original size, crop's top
    left corner, target size (each as height, width)."""
    return [height, width, 0, 0, height, width]


class StableDiffusionXL(Family):
    name = "sdxl"
    title = "Stable Diffusion XL"
    pipelines = ("StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline")
    weight_components = ("unet", "vae", "text_encoder", "text_encoder_2")
    denoiser_component = "unet"

    @classmethod
    def checkpoint_config(cls, keys: Collection[str]) -> str | None:
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            return CONFIG_SDXL
        return None

    @classmethod
    def load_folder(cls, folder: Path, device) -> "StableDiffusionXL":
        return cls(load_pipeline(_pipeline_class(), folder, device, cls.load_options), device)

    @classmethod
    def load_single_file(cls, path: Path, config: Path, device) -> "StableDiffusionXL":
        return cls(load_pipeline(_pipeline_class(), path, device, cls.load_options, config), device)

    def __init__(self, pipe, device) -> None:
        super().__init__(device)
        self.unet, self.vae = pipe.unet, pipe.vae
        self.pipeline = pipe
        # A refiner-style model has only the second encoder.
        pairs = [(pipe.tokenizer, pipe.text_encoder, "clip_l"), (pipe.tokenizer_2, pipe.text_encoder_2, "clip_g")]
        self.clips = [ClipText(tok, enc, role) for tok, enc, role in pairs if enc is not None]
        move({"unet": self.unet, "vae": self.vae, **{f"text_{i}": c.encoder for i, c in enumerate(self.clips)}},
             device.device)
        # An empty negative prompt conditions on zeros, as SDXL was trained (the pipeline's config says so).
        self.zeros_for_empty_prompt = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True))
        self.scheduler_config = dict(pipe.scheduler.config)
        self.prediction = check_prediction(self.scheduler_config.get("prediction_type", "epsilon"), self.title)
        self.latent_format = LatentFormat(
            channels=self.vae.config.latent_channels,  # an inpainting U-Net takes 9: latents, mask, picture
            scaling_factor=as_float(self.vae.config.scaling_factor, 0.13025),
            shift=as_float(getattr(self.vae.config, "shift_factor", None)),
            vae_scale_factor=vae_scale_factor(self.vae),
            preview_factors=PREVIEW_FACTORS,
            preview_bias=PREVIEW_BIAS,
        )

    @property
    def denoiser(self):
        return self.unet

    def _embed(self, row, vectors):
        """(states of both encoders side by side, the first pooled projection) of one prompt's chunks."""
        import torch

        hidden, pooled = [], None
        for clip, chunks, clip_vectors in zip(self.clips, row, vectors):
            states, projected = encode_chunks(clip, chunks, self.device.device, penultimate=True, vectors=clip_vectors)
            hidden.append(states)
            pooled = projected if pooled is None else pooled
        dtype = self.clips[-1].encoder.dtype
        return torch.concat(hidden, dim=-1).to(dtype), pooled

    def encode(self, prompt: str, negative_prompt: str, cfg: bool, height: int, width: int) -> Conditioning:
        """Both encoders' penultimate states of the prompt read with A1111's syntax, the second's pooled
        projection, and the size as time ids; the negative prompt first when ``cfg`` (zeros when it is empty)."""
        import torch

        zeros = cfg and not negative_prompt and self.zeros_for_empty_prompt
        texts = [prompt, negative_prompt] if cfg and not zeros else [prompt]
        chunked = chunk_texts(self.clips, texts)
        with torch.inference_mode():
            embeds, pooled = self._embed(chunked.rows[0], chunked.vectors)
            ids = torch.tensor([time_ids(height, width)], dtype=embeds.dtype).to(self.device.device)
            if cfg:
                if zeros:
                    negative, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
                else:
                    negative, negative_pooled = self._embed(chunked.rows[1], chunked.vectors)
                embeds = torch.cat([negative, embeds])
                pooled = torch.cat([negative_pooled, pooled])
                ids = torch.cat([ids, ids])
        return Conditioning({"embeds": embeds, "text_embeds": pooled, "time_ids": ids}, cfg)

    def model_inputs(self, x, t, cond: Conditioning):
        tensors = cond.tensors
        return (x, t), {
            "encoder_hidden_states": tensors["embeds"],
            "added_cond_kwargs": {"text_embeds": tensors["text_embeds"], "time_ids": tensors["time_ids"]},
            "return_dict": False,
        }

    def decode(self, latents, half_first: bool = False):
        return vae_decode(self.vae, latents, self.latent_format, half_first)

    def encode_image(self, rgb):
        return vae_encode(self.vae, rgb, self.latent_format, self.device.device, self.device.dtype)
