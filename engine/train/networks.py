"""The networks the trainer builds from a :class:`~engine.train.trainer.TrainConfig`: the autoencoder, the CLIP
text encoder and the U-Net, as the diffusers and transformers classes the app loads (so an export is a plain
Stable Diffusion folder). Random weights; the trainer trains them."""

from __future__ import annotations


def make_vae(cfg):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels), layers_per_block=cfg.vae_layers,
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.vae_norm_groups,
        sample_size=cfg.resolution, scaling_factor=1.0,
    )


def make_text_encoder(cfg, vocab_size: int, bos_id: int, eos_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    tc = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=cfg.text_width * 4,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length, hidden_act="quick_gelu", projection_dim=cfg.text_width,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id,
    )
    return CLIPTextModel(tc)


def make_unet(cfg):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    # Cross-attention at every level but the coarsest (and in the middle block); without full-size attention,
    # not at the first level either.
    attended = [i < n - 1 and (i > 0 or cfg.unet_full_size_attention) for i in range(n)]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attended)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attended))
    return UNet2DConditionModel(
        sample_size=cfg.resolution // 2 ** (len(cfg.vae_channels) - 1),
        in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(cfg.unet_channels), layers_per_block=cfg.unet_layers,
        cross_attention_dim=cfg.text_width, attention_head_dim=cfg.attention_heads,
        norm_num_groups=32,
    )
