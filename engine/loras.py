"""LoRA files: a request's LoRAs resolved to files in the LoRA folder, read, and checked against the loaded model
before anything touches it.

A request lists its LoRAs by name (``LoraRef``; tags in the prompt became entries when it was built, see
:func:`engine.request.prompt_loras`). :func:`resolve` finds each one's ``.safetensors`` file in
:func:`engine.paths.loras_dir` and records its SHA-256 (what the image's metadata keeps). :func:`check_family`
reads the tensor names (kohya's ``lora_unet_…``/``lora_te…``, diffusers' ``unet.…``, PEFT's ``lora_A``/``lora_B``)
and shapes to refuse, with a message that says so, a LoRA made for another kind of model: names tell SD3 and Flux
from the U-Net families, kohya's ``lora_te1``/``lora_te2`` tell SDXL, and the width of the cross-attention's keys
tells SD 1.x (768), SD 2.x (1024) and SDXL (2048) apart. Applying is :mod:`engine.lora_apply`'s.

File reads on the engine's worker thread; importing this module costs nothing (torch only inside functions).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import addon_files, paths
from .errors import DarkroomError, ErrorKind
from .request import LoraRef

#: Largest LoRA file opened (Flux LoRAs of high rank reach a few gigabytes).
MAX_BYTES = 6 * 2**30
MAX_TENSORS = 50_000

#: Cross-attention width (a LoRA's ``attn2.to_k`` input) → the U-Net family that has it.
_CONTEXT_WIDTHS = {768: "Stable Diffusion 1.x", 1024: "Stable Diffusion 2.x", 2048: "Stable Diffusion XL"}
_TITLES = {"sd": "Stable Diffusion 1.x/2.x", "sdxl": "Stable Diffusion XL", "sd3": "Stable Diffusion 3",
           "flux": "Flux.1", "unet": "a U-Net model (Stable Diffusion 1.x, 2.x or XL)",
           "transformer": "a transformer model (SD3 or Flux)"}
#: Names of the tensors that make a LoRA layer: its down (A) and up (B) matrices, and kohya's alpha.
_DOWN = re.compile(r"(lora_down|lora\.down|lora_A|lora_linear_layer\.down)(\.[\w-]+)?\.weight$")
_PART = re.compile(r"(lora_down|lora_up|lora\.down|lora\.up|lora_A|lora_B|lora_linear_layer\.(down|up))"
                   r"(\.[\w-]+)?\.(weight|bias)$|\.alpha$")


@dataclass(frozen=True)
class ResolvedLora:
    """A request's LoRA with its file: ``ref`` carries the file's SHA-256; ``note`` says when it differs from the
    hash the recipe recorded."""

    ref: LoraRef
    path: Path
    note: str = ""

    @property
    def adapter_name(self) -> str:
        """The adapter's name inside the model: by content, so the same file under two names loads once."""
        return f"lora_{self.ref.sha256[:16]}"


def resolve(loras: Iterable, folder: Path | None = None) -> list[ResolvedLora]:
    """Each LoRA of a request with its file in ``folder`` (default: the LoRA folder) and the file's hash.
    Raises DarkroomError naming a missing one, before any model work."""
    folder = folder or paths.loras_dir()
    resolved = []
    for ref in loras:
        path = addon_files.find(folder, ref.name, "LoRA")
        digest = addon_files.sha256(path)
        note = ""
        if ref.sha256 and ref.sha256 != digest:
            note = (f"The LoRA {ref.name!r} is not the file this recipe was made with (its hash differs); "
                    "the file there now was used.")
        resolved.append(ResolvedLora(dataclasses.replace(ref, sha256=digest), path, note))
    return resolved


def read(lora: ResolvedLora) -> dict:
    """The LoRA's tensors, checked to be LoRA layers only (no whole layers, no other adapter kinds)."""
    tensors = addon_files.read_tensors(lora.path, "LoRA", MAX_BYTES, MAX_TENSORS)
    name = lora.ref.name
    if not tensors:
        raise DarkroomError(f"The LoRA {name!r} holds no tensors.", kind=ErrorKind.MODEL_UNSUPPORTED)
    if any("hada_" in k or "lokr_" in k or ".oft_" in k for k in tensors):
        raise DarkroomError(f"The LoRA {name!r} is a LyCORIS file (LoHa, LoKr or OFT layers), which Darkroom does "
                            "not apply; only LoRA layers (lora_down/lora_up or lora_A/lora_B) are.",
                            kind=ErrorKind.MODEL_UNSUPPORTED)
    other = [k for k in tensors if not _PART.search(k)]
    if other:
        raise DarkroomError(f"The LoRA {name!r} has tensors Darkroom does not recognise as LoRA layers "
                            f"({_examples(other)}).", kind=ErrorKind.MODEL_UNSUPPORTED)
    return tensors


def guess_family(keys: Iterable[str]) -> str | None:
    """The kind of model a LoRA's tensor names are for: "sdxl", "sd3", "flux", "unet" (SD 1.x/2.x or SDXL),
    "transformer" (SD3 or Flux) or None when no name says."""
    keys = list(keys)

    def has(*parts: str) -> bool:
        return any(part in key for key in keys for part in parts)

    if has("double_blocks", "single_blocks", "single_transformer_blocks"):
        return "flux"
    if has("joint_blocks", "context_block", "x_block"):
        return "sd3"
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return "sdxl"
    if any(k.startswith(("transformer.", "lora_transformer_")) for k in keys) or has("transformer_blocks.0.attn.add_"):
        return "transformer"
    if any(k.startswith(("unet.", "lora_unet_")) for k in keys) or has("down_blocks", "up_blocks", "mid_block",
                                                                       "input_blocks", "output_blocks"):
        return "unet"
    if any(k.startswith(("lora_te_", "text_encoder.")) for k in keys):
        return "unet"  # a text-encoder-only LoRA of SD 1.x/2.x
    return None


def context_width(tensors: Mapping) -> int | None:
    """The width of the text conditioning a U-Net LoRA was trained on: the input width of a cross-attention key
    projection's down matrix, or None when it has none."""
    for key, value in tensors.items():
        flat = key.replace(".", "_")
        if "attn2_to_k" in flat and _DOWN.search(key) and getattr(value, "ndim", 0) == 2:
            return int(value.shape[1])
    return None


def check_family(lora: ResolvedLora, tensors: Mapping, family) -> None:
    """Refuse, with a message saying what the LoRA was made for, one that cannot fit the loaded ``family`` (a
    :class:`~engine.families.base.Family`). What the names and widths cannot tell is left to the loading."""
    name = lora.ref.name
    guess = guess_family(tensors)
    if guess is None:
        raise DarkroomError(f"The LoRA {name!r} has no layers Darkroom recognises ({_examples(list(tensors))}).",
                            kind=ErrorKind.MODEL_UNSUPPORTED)
    unet_family = family.name in ("sd", "sdxl")
    fits = {"unet": unet_family, "transformer": not unet_family, "sdxl": family.name == "sdxl",
            "sd3": family.name == "sd3", "flux": family.name == "flux"}[guess]
    if not fits:
        raise wrong_family(name, _TITLES[guess], family.title)
    if family.name == "sd3" and any(k.startswith("lora_unet_joint_blocks") for k in tensors):
        raise DarkroomError(f"The LoRA {name!r} names SD3's layers as sd-scripts does, which the diffusers library "
                            "Darkroom loads LoRAs with cannot convert yet. A LoRA saved in the diffusers format works.",
                            kind=ErrorKind.MODEL_UNSUPPORTED)
    if family.name == "flux":
        channels = int(family.denoiser.config.in_channels)
        for key, value in tensors.items():
            if ("x_embedder" in key or "img_in" in key) and _DOWN.search(key) and value.shape[-1] != channels:
                raise DarkroomError(f"The LoRA {name!r} is a Flux Control LoRA (its input layer takes "
                                    f"{value.shape[-1]} channels), which Darkroom does not apply.",
                                    kind=ErrorKind.MODEL_UNSUPPORTED)
    width = context_width(tensors) if unet_family else None
    model_width = getattr(getattr(family.denoiser, "config", None), "cross_attention_dim", None)
    if width is not None and model_width is not None and width != int(model_width):
        made_for = _CONTEXT_WIDTHS.get(width, f"a model whose text conditioning is {width} wide")
        raise wrong_family(name, made_for, f"{family.title} (text conditioning {model_width} wide)")


def wrong_family(name: str, made_for: str, loaded: str) -> DarkroomError:
    return DarkroomError(f"The LoRA {name!r} was made for {made_for}; the model loaded is {loaded}. Choose a LoRA "
                         "made for this model, or a model of its kind.", kind=ErrorKind.MODEL_UNSUPPORTED)


def down_count(tensors: Mapping) -> int:
    """How many layers a (converted) LoRA state dict adapts: its down (A) matrices."""
    return sum(1 for key in tensors if _DOWN.search(key))


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(k[:80] for k in sorted(keys)[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
