"""Write a diffusers SD1.x or SDXL pipeline folder as one original-layout (LDM) ``.safetensors`` checkpoint.

That is the layout people download from model sites; tests use it to drive the single-file loader offline.
The key mapping is the inverse of the one diffusers applies when it reads such files, written for any number
of blocks and layers per block so tiny test models convert too.
"""

from __future__ import annotations

import json
from pathlib import Path

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
_UNET_TOP = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2.")]
#: OpenCLIP's names for the parts of a CLIP text encoder (SDXL's second one), inside each residual block.
_OPEN_CLIP_BLOCK = [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                    ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj.")]


def _unet_prefixes(config: dict, keys) -> list[tuple[str, str]]:
    lpb = config["layers_per_block"]
    n = len(config["block_out_channels"])
    pairs = list(_UNET_TOP)
    for i in range(n):
        for j in range(lpb):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.0."))
            pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.1."))
        if i < n - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(lpb + 1) * (i + 1)}.0.op."))
        for j in range(lpb + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(lpb + 1) * i + j}.0."))
            pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(lpb + 1) * i + j}.1."))
        if i < n - 1:
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys)
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attention else 1}."))
    pairs += [("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
              ("mid_block.resnets.1.", "middle_block.2.")]
    return pairs


def _unet_key(key: str, prefixes) -> str:
    for hf, sd in prefixes:
        if key.startswith(hf):
            rest = key[len(hf):]
            if ".resnets." in hf or hf.startswith("mid_block.resnets"):
                for a, b in _RESNET:
                    if rest.startswith(a + "."):
                        rest = b + rest[len(a):]
            return sd + rest
    raise KeyError(key)


def _vae_key(key: str, n: int) -> tuple[str, bool]:
    out = key
    for part in ("encoder", "decoder"):
        for k in range(2):
            out = out.replace(f"{part}.mid_block.resnets.{k}.", f"{part}.mid.block_{k + 1}.")
        out = out.replace(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")
    for i in range(n):
        out = out.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
        out = out.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
        out = out.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block.")
        out = out.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")
    out = out.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    attention = ".attn_1." in out
    if attention:
        for a, b in (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")):
            out = out.replace(".attn_1." + a, ".attn_1." + b)
    return out, attention and out.endswith("weight") and ".norm." not in out


def export_single_file(folder: Path, target: Path) -> Path:
    from safetensors.torch import load_file, save_file

    unet = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    config = json.loads((folder / "unet" / "config.json").read_text())
    prefixes = _unet_prefixes(config, unet)
    out = {"model.diffusion_model." + _unet_key(k, prefixes): v for k, v in unet.items()}
    vae = load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    n = len(json.loads((folder / "vae" / "config.json").read_text())["block_out_channels"])
    for k, v in vae.items():
        new, conv_shaped = _vae_key(k, n)
        out["first_stage_model." + new] = v.reshape(*v.shape, 1, 1) if conv_shaped and v.ndim == 2 else v
    xl = (folder / "text_encoder_2").is_dir()
    first = "conditioner.embedders.0.transformer." if xl else "cond_stage_model.transformer."
    for k, v in load_file(str(folder / "text_encoder" / "model.safetensors")).items():
        out[first + (k if k.startswith("text_model.") else "text_model." + k)] = v
    if xl:
        second = load_file(str(folder / "text_encoder_2" / "model.safetensors"))
        out.update({"conditioner.embedders.1.model." + k: v for k, v in _open_clip(second).items()})
    save_file({k: v.contiguous() for k, v in out.items()}, str(target))
    return target


def _open_clip(weights: dict) -> dict:
    """A transformers CLIPTextModelWithProjection's weights in OpenCLIP's layout (q, k and v in one matrix, the
    projection transposed), as SDXL checkpoints keep the second text encoder."""
    import torch

    weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    out = {"positional_embedding": weights.pop("embeddings.position_embedding.weight"),
           "token_embedding.weight": weights.pop("embeddings.token_embedding.weight"),
           "ln_final.weight": weights.pop("final_layer_norm.weight"), "ln_final.bias": weights.pop("final_layer_norm.bias"),
           "text_projection": weights.pop("text_projection.weight").T.contiguous()}
    layers = sorted({int(k.split(".")[2]) for k in weights if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [weights.pop(f"{src}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")])
        for key in [k for k in weights if k.startswith(src)]:
            rest = key[len(src):]
            for a, b in _OPEN_CLIP_BLOCK:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            out[dst + rest] = weights.pop(key)
    weights.pop("embeddings.position_ids", None)
    assert not weights, f"unconverted: {sorted(weights)[:5]}"
    return out
