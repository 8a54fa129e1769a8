"""Tiny random-weight Stable Diffusion pipelines built from configs, saved the way real models are saved.

They run on a CPU in well under a second and go through Darkroom's own loader, so tests exercise the real
path without a network. Seeds are fixed so every build gives the same weights.
"""

from __future__ import annotations

from pathlib import Path


def _byte_vocab_tokenizer(folder: Path):
    from engine.train.tokenizer import byte_level_tokenizer

    return byte_level_tokenizer(folder)


def build_tiny_sd(folder: Path, *, sample_size: int = 8, seed: int = 0, inpainting: bool = False) -> Path:
    """Save a tiny SD1.x-style pipeline folder (latents 4×sample_size², images 8× larger) and return it.
    ``inpainting``: a 9-channel U-Net (latents, mask, masked picture) saved as an inpainting pipeline."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=sample_size,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=sample_size * 8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )
    tok_dir = folder / "_tok"
    tokenizer, vocab_size = _byte_vocab_tokenizer(tok_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=vocab_size,
            max_position_embeddings=77,
        )
    )
    pipe = (StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline)(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return folder


def build_tiny_sdxl(folder: Path, *, sample_size: int = 8, seed: int = 0, second_width: int = 32) -> Path:
    """Save a tiny SDXL-style pipeline folder (two text encoders, added time embeddings). ``second_width``: the
    second text encoder's width (SDXL's real ones differ, which is how single-file loading tells them apart)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + second_width,
        cross_attention_dim=32 + second_width,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=sample_size * 8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    tok_dir = folder / "_tok"
    tokenizer, vocab_size = _byte_vocab_tokenizer(tok_dir)
    cfg = dict(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**cfg, "hidden_size": second_width,
                                                                   "projection_dim": second_width}))
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return folder


def build_tiny_controlnet(model_folder: Path, folder: Path, *, seed: int = 0, single_file: Path | None = None) -> Path:
    """Save a tiny random ControlNet for the U-Net of ``model_folder`` (a diffusers folder) and return it.
    Its zero-initialised output layers get random weights, so the control visibly steers the picture.
    ``single_file``: also save its weights as one .safetensors file there (diffusers layout)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_folder / "unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8), load_weights_from_unet=False)
    with torch.no_grad():
        for module in (*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out):
            for p in module.parameters():
                p.normal_(0.0, 0.5)
    net.save_pretrained(folder, safe_serialization=True)
    if single_file is not None:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(single_file))
    return folder


def _tiny_t5(d_model: int):
    """A T5 tokenizer built without downloads and a 2-layer T5 encoder over its vocabulary."""
    from transformers import T5Config, T5EncoderModel

    from engine.train.tokenizer import unigram_t5_tokenizer

    words = ["a", "red", "apple", "cat", "on", "the", "table", "photo", "of", "blue", "sky", "dog", "green"]
    tokenizer, vocab_size = unigram_t5_tokenizer(words)
    encoder = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_ff=37, d_kv=8, num_heads=4,
                                      num_layers=2, feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    return tokenizer, encoder


def _tiny_vae16(sample_size: int, scaling_factor: float, shift_factor: float):
    """A 16-channel VAE (as SD3's and Flux's) with 4 blocks: 8× downscaling."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=16,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=sample_size * 8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )


def _clip_config(vocab_size: int, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                          hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
                          num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=77, hidden_act="gelu",
                          projection_dim=projection)


def _save(pipe, folder: Path, tok_dir: Path) -> Path:
    pipe.save_pretrained(folder, safe_serialization=True)
    for p in tok_dir.iterdir():
        p.unlink()
    tok_dir.rmdir()
    return folder


def build_tiny_sd3(folder: Path, *, sample_size: int = 8, seed: int = 0, with_t5: bool = True) -> Path:
    """Save a tiny SD3-style folder: an MMDiT transformer (2×2 patches) over 16-channel latents, CLIP-L and
    CLIP-G stand-ins with projections, and (unless ``with_t5`` is False) a T5 encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=sample_size, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
        out_channels=16, pos_embed_max_size=32,
    )
    vae = _tiny_vae16(sample_size, 1.5305, 0.0609)
    tok_dir = folder / "_tok"
    tokenizer, vocab_size = _byte_vocab_tokenizer(tok_dir)
    clip_l = CLIPTextModelWithProjection(_clip_config(vocab_size))
    clip_g = CLIPTextModelWithProjection(_clip_config(vocab_size))
    t5_tokenizer, t5 = _tiny_t5(64) if with_t5 else (None, None)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=clip_l, tokenizer=tokenizer, text_encoder_2=clip_g, tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer,
    )
    return _save(pipe, folder, tok_dir)


def build_tiny_flux(folder: Path, *, sample_size: int = 8, seed: int = 0, schnell: bool = False) -> Path:
    """Save a tiny Flux.1-style folder: dev (guidance input, size-dependent shift) or ``schnell``."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=not schnell,
        axes_dims_rope=(4, 6, 6),
    )
    vae = _tiny_vae16(sample_size, 0.3611, 0.1159)
    if schnell:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    tok_dir = folder / "_tok"
    tokenizer, vocab_size = _byte_vocab_tokenizer(tok_dir)
    clip = CLIPTextModel(_clip_config(vocab_size))
    t5_tokenizer, t5 = _tiny_t5(32)
    pipe = FluxPipeline(transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=clip, tokenizer=tokenizer,
                        text_encoder_2=t5, tokenizer_2=t5_tokenizer)
    return _save(pipe, folder, tok_dir)
