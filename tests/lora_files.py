"""Tiny random LoRA files for the tiny test models, in kohya's and in diffusers/PEFT's key formats, built from the
models' own module names and shapes."""

from __future__ import annotations

from pathlib import Path

#: Layers a LoRA adapts: attention projections of the U-Net and the text encoders (as LoRA trainers do).
_UNET_LAYERS = (".to_q", ".to_k", ".to_v", ".to_out.0")
_TEXT_LAYERS = (".q_proj", ".k_proj", ".v_proj", ".out_proj")


def linear_layers(module, endings) -> dict[str, tuple[int, int]]:
    """name → (in features, out features) of the module's Linear layers whose names end with ``endings``."""
    import torch

    return {name: (m.in_features, m.out_features) for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and name.endswith(endings)}


def model_layers(model_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """The adaptable layers of a tiny model folder, per component (unet, text_encoder, text_encoder_2)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    layers = {"unet": linear_layers(UNet2DConditionModel.from_pretrained(model_dir / "unet"), _UNET_LAYERS)}
    for component in ("text_encoder", "text_encoder_2"):
        if (model_dir / component).is_dir():
            layers[component] = linear_layers(CLIPTextModel.from_pretrained(model_dir / component), _TEXT_LAYERS)
    return layers


def transformer_layers(model_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """The attention projections of a tiny SD3 or Flux folder's transformer, read from its weights' shapes."""
    from safetensors import safe_open

    (weights,) = (model_dir / "transformer").glob("*.safetensors")
    found = {}
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            if key.endswith((".attn.to_q.weight", ".attn.to_k.weight", ".attn.to_v.weight")):
                out_features, in_features = f.get_slice(key).get_shape()
                found[key.removesuffix(".weight")] = (in_features, out_features)
    return {"transformer": found}


def write_lora(path: Path, layers: dict[str, dict[str, tuple[int, int]]], *, style: str = "kohya", rank: int = 4,
               seed: int = 0, scale: float = 0.3, extra: dict | None = None) -> Path:
    """A random LoRA for ``layers`` (from :func:`model_layers`), saved with safetensors. ``style``: "kohya"
    (``lora_unet_…``/``lora_te…``, lora_down/lora_up and alpha) or "peft" (``unet.…lora_A/lora_B``). ``extra``:
    more tensors, as they are."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    kohya_prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if "text_encoder_2" in layers else "lora_te_",
                    "text_encoder_2": "lora_te2_", "transformer": "lora_transformer_"}
    for component, found in layers.items():
        for name, (fan_in, fan_out) in sorted(found.items()):
            down = torch.randn(rank, fan_in, generator=g) * scale
            up = torch.randn(fan_out, rank, generator=g) * scale
            if style == "kohya":
                module = name if component in ("unet", "transformer") else "text_model." + name
                key = kohya_prefix[component] + module.replace(".", "_")
                tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                            f"{key}.alpha": torch.tensor(float(rank))}
            else:
                module = name if component in ("unet", "transformer") else "text_model." + name
                tensors |= {f"{component}.{module}.lora_A.weight": down, f"{component}.{module}.lora_B.weight": up}
    tensors.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
