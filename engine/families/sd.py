"""Stable Diffusion 1.x and 2.x (ε- and v-prediction): a U-Net conditioned on one CLIP text encoder's last
hidden state, 4-channel latents at 1/8 of the image size. The bundled model is of this family."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from .base import Conditioning, Family, LatentFormat, as_float, check_prediction, vae_scale_factor
from .components import load_pipeline, move, vae_decode, vae_encode
from .text_encoders import ClipText, chunk_texts, encode_chunks

#: Linear latent → RGB factors fitted for the SD 1.x VAE (rows: latent channels).
PREVIEW_FACTORS = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                   (-0.2120, -0.2616, -0.7177))

#: Configuration repositories for single files: SD 1.x, and SD 2.x (OpenCLIP text encoder).
CONFIG_SD1 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CONFIG_SD2 = "stabilityai/stable-diffusion-2-1"


def _pipeline_class():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

    return StableDiffusionPipeline


class StableDiffusion(Family):
    name = "sd"
    title = "Stable Diffusion 1.x/2.x"
    #: Img2img and inpainting folders hold the same components (an inpainting U-Net takes 9 input channels).
    pipelines = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
    weight_components = ("unet", "vae", "text_encoder")
    denoiser_component = "unet"
    #: No safety checker (people run their own models on their own machine) and so no feature extractor.
    load_options = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    @classmethod
    def checkpoint_config(cls, keys: Collection[str]) -> str | None:
        keys = list(keys)
        if any(k.startswith("conditioner.embedders.") for k in keys):
            return None  # SDXL's two text encoders
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            return CONFIG_SD2
        if any(k.startswith(("cond_stage_model.transformer.", "model.diffusion_model.input_blocks.")) for k in keys):
            return CONFIG_SD1
        return None

    @classmethod
    def load_folder(cls, folder: Path, device) -> "StableDiffusion":
        return cls(load_pipeline(_pipeline_class(), folder, device, cls.load_options), device)

    @classmethod
    def load_single_file(cls, path: Path, config: Path, device) -> "StableDiffusion":
        return cls(load_pipeline(_pipeline_class(), path, device, cls.load_options, config), device)

    def __init__(self, pipe, device) -> None:
        super().__init__(device)
        self.unet, self.vae = pipe.unet, pipe.vae
        self.pipeline = pipe
        self.text_encoder, self.tokenizer = pipe.text_encoder, pipe.tokenizer
        self.clip = ClipText(pipe.tokenizer, pipe.text_encoder)
        move({"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}, device.device)
        self.scheduler_config = dict(pipe.scheduler.config)
        self.prediction = check_prediction(self.scheduler_config.get("prediction_type", "epsilon"), self.title)
        self.latent_format = LatentFormat(
            channels=self.vae.config.latent_channels,  # an inpainting U-Net takes 9: latents, mask, picture
            scaling_factor=as_float(self.vae.config.scaling_factor, 0.18215),
            shift=as_float(getattr(self.vae.config, "shift_factor", None)),
            vae_scale_factor=vae_scale_factor(self.vae),
            preview_factors=PREVIEW_FACTORS,
        )

    @property
    def denoiser(self):
        return self.unet

    def encode(self, prompt: str, negative_prompt: str, cfg: bool, height: int, width: int) -> Conditioning:
        """The text encoder's last hidden states of the prompt read with A1111's syntax (weights, ``BREAK``,
        77-token chunks), the negative prompt's first when ``cfg``."""
        import torch

        device = self.device.device
        texts = [negative_prompt, prompt] if cfg else [prompt]
        chunked = chunk_texts([self.clip], texts)
        with torch.inference_mode():
            embeds = [encode_chunks(self.clip, row[0], device, vectors=chunked.vectors[0])[0] for row in chunked.rows]
        return Conditioning({"embeds": embeds[0] if len(embeds) == 1 else torch.cat(embeds)}, cfg)

    def model_inputs(self, x, t, cond: Conditioning):
        return (x, t), {"encoder_hidden_states": cond.tensors["embeds"], "return_dict": False}

    def decode(self, latents, half_first: bool = False):
        return vae_decode(self.vae, latents, self.latent_format, half_first)

    def encode_image(self, rgb):
        return vae_encode(self.vae, rgb, self.latent_format, self.device.device, self.device.dtype)
