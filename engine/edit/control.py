"""ControlNet for the U-Net families (Stable Diffusion 1.x/2.x and SDXL): finding, checking and loading control
models, and the denoiser wrapper that adds their residuals to the U-Net's.

A control model is a diffusers ``ControlNetModel`` folder (``config.json`` + ``.safetensors`` weights) or one
``.safetensors`` file (diffusers or original layout; its architecture is the loaded model's U-Net encoder, so no
configuration download is needed). A name without a path is looked up in the models folder's ``controlnet``
subfolder. A control model made for another kind of model is refused with a message saying which kind it is for.

Worker thread only (torch, diffusers); :func:`find_control_model` is plain file-system code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ModelCorruptError, ModelNotFoundError, ModelUnsupportedError
from ..models import UNSAFE_SUFFIXES

log = logging.getLogger(__name__)

#: Families whose network takes ControlNet residuals.
CONTROL_FAMILIES = ("sd", "sdxl")
_TITLES = {"sd": "Stable Diffusion 1.x/2.x", "sdxl": "Stable Diffusion XL"}


def control_models_dir() -> Path:
    """Where control models are found by name."""
    return paths.models_dir() / "controlnet"


def find_control_model(name: str) -> Path:
    """The folder or file a request's control model names (a path, or a name in :func:`control_models_dir`).
    Raises ModelNotFoundError / ModelUnsupportedError."""
    path = Path(name).expanduser()
    if not path.exists() and path.name == name:
        folder = control_models_dir()
        candidates = sorted(folder.iterdir()) if folder.is_dir() else []
        for child in candidates:
            if name.lower() in (child.name.lower(), child.stem.lower()):
                path = child
                break
    if not path.exists():
        raise ModelNotFoundError(
            f"Control model {name[:80]!r} was not found: give its path, or put it in {control_models_dir()}.")
    if path.is_file() and path.suffix.lower() in UNSAFE_SUFFIXES:
        raise ModelUnsupportedError(
            f"{path.name} is a pickle-based file, which can run code when opened. Darkroom only opens .safetensors "
            "control models.")
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise ModelUnsupportedError(f"{path.name} is not a control model (expected a folder or a .safetensors file).")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelUnsupportedError(f"The folder {path.name!r} is not a ControlNet: it has no config.json.")
    return path


def control_family(config: dict[str, Any]) -> str:
    """The family a ControlNet's configuration was made for: SDXL's take the size and pooled text embedding."""
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd"


def check_family(family) -> None:
    """Refuse control inputs for a family whose network takes no ControlNet residuals."""
    if family.name not in CONTROL_FAMILIES:
        raise ModelUnsupportedError(
            f"Control models work with {' and '.join(_TITLES.values())} models; {family.title} is not supported yet.")


def check_fits(name: str, config: dict[str, Any], family) -> None:
    """Refuse a control model made for another family (or another version of it) than the loaded model's."""
    check_family(family)
    made_for = control_family(config)
    if made_for != family.name:
        raise ModelUnsupportedError(
            f"The control model {name} is made for {_TITLES[made_for]} models; the model in use is {family.title}.")
    ours = family.denoiser.config.cross_attention_dim
    theirs = config.get("cross_attention_dim")
    if theirs is not None and theirs != ours:
        raise ModelUnsupportedError(
            f"The control model {name} is made for another version of {family.title} (text features "
            f"{theirs} wide; this model's are {ours}).")


def _embedding_channels(state: dict[str, Any]) -> tuple[int, ...]:
    """The conditioning embedding's widths, read off its weights (conv_in, then every other block)."""
    first = state["controlnet_cond_embedding.conv_in.weight"].shape[0]
    blocks = sorted(int(k.split(".")[2]) for k in state
                    if k.startswith("controlnet_cond_embedding.blocks.") and k.endswith(".weight"))
    return (first, *(state[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0] for i in blocks if i % 2 == 1))


def _load_file(path: Path, family, dtype):
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own types for every kind of damage
        raise ModelCorruptError(f"The control model {path.name} is damaged and cannot be read.", str(exc)) from None
    if "time_embedding.linear_1.weight" not in state:  # original (ldm) layout: convert to diffusers names
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        try:
            state = convert_controlnet_checkpoint(state, dict(family.denoiser.config))
        except Exception as exc:  # noqa: BLE001 - any odd layout
            raise ModelUnsupportedError(f"{path.name} is not a ControlNet Darkroom can read.", repr(exc)[:300]) from None
    if "controlnet_cond_embedding.conv_in.weight" not in state:
        raise ModelUnsupportedError(f"{path.name} is not a ControlNet Darkroom can read.")
    made_for = "sdxl" if any(k.startswith("add_embedding.") for k in state) else "sd"
    key = next((k for k in state if k.endswith("attn2.to_k.weight")), None)
    check_fits(path.name, {"addition_embed_type": "text_time" if made_for == "sdxl" else None,
                           "cross_attention_dim": state[key].shape[1] if key else None}, family)
    import torch

    with torch.device("meta"):  # the architecture only: the weights come from the file
        net = ControlNetModel.from_unet(family.denoiser, conditioning_embedding_out_channels=_embedding_channels(state),
                                        load_weights_from_unet=False)
        channels = state["conv_in.weight"].shape[1] if "conv_in.weight" in state else net.config.in_channels
        if channels != net.config.in_channels:  # an inpainting U-Net takes more channels than its control models
            net = ControlNetModel.from_config({**dict(net.config), "in_channels": channels})
    missing, unexpected = net.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ModelUnsupportedError(
            f"The control model {path.name} does not fit this model's architecture.",
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return net.to(dtype)


def load_control_model(path: Path, family, device) -> Any:
    """A ControlNetModel for ``family`` (a loaded family) on its device. Raises DarkroomErrors for people."""
    from diffusers import ControlNetModel

    if path.is_dir():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelCorruptError(f"The control model {path.name} has a damaged config.json.", str(exc)) from None
        check_fits(path.name, config if isinstance(config, dict) else {}, family)
        if not list(path.glob("*.safetensors")):
            raise ModelUnsupportedError(f"The control model {path.name} has no .safetensors weights.")
        try:
            net = ControlNetModel.from_pretrained(str(path), torch_dtype=device.dtype, use_safetensors=True,
                                                  local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelCorruptError(f"The control model {path.name} could not be loaded.", repr(exc)[:300]) from None
    else:
        net = _load_file(path, family, device.dtype)
    return net.to(device.device).eval()


class ControlModels:
    """The control models loaded for the current model (worker thread only): kept while the model stays
    loaded, keyed by file and its modification time, at most :attr:`limit` of them."""

    limit = 4

    def __init__(self) -> None:
        self._nets: dict[tuple, Any] = {}

    def get(self, name: str, family, device):
        check_family(family)
        path = find_control_model(name)
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, id(family))
        net = self._nets.get(key)
        if net is None:
            net = load_control_model(path, family, device)
            if len(self._nets) >= self.limit:
                self._nets.pop(next(iter(self._nets)))
            self._nets[key] = net
        return net

    def clear(self) -> None:
        self._nets.clear()


@dataclass
class ActiveControl:
    net: Any
    image: Any  # float tensor (1, 3, H, W) in [0, 1] on the device
    weight: float
    start: float
    end: float


class ControlledDenoiser:
    """The U-Net with control models: each call first runs the control models active at this step on the same
    inputs and hands their summed residuals to the U-Net. :meth:`before_model` (a :class:`Pass` hook) says
    which step the next call is; a control is active on steps i with start ≤ i/n and (i+1)/n ≤ end."""

    def __init__(self, unet, controls: list[ActiveControl]):
        self.unet = unet
        self.controls = [c for c in controls if c.weight > 0.0]  # weight 0 is no control, exactly
        self._active: list[ActiveControl] = []

    def before_model(self, i: int, n: int) -> None:
        self._active = [c for c in self.controls if not (i / n < c.start or (i + 1) / n > c.end)]

    def __call__(self, sample, timestep, **kwargs):
        if not self._active:
            return self.unet(sample, timestep, **kwargs)
        down, mid = None, None
        shared = {k: kwargs[k] for k in ("encoder_hidden_states", "added_cond_kwargs") if k in kwargs}
        for c in self._active:
            image = c.image if c.image.shape[0] == sample.shape[0] else c.image.repeat(sample.shape[0], 1, 1, 1)
            d, m = c.net(sample[:, :c.net.config.in_channels], timestep, controlnet_cond=image.to(sample.dtype),
                         conditioning_scale=c.weight, return_dict=False, **shared)
            down = list(d) if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        return self.unet(sample, timestep, down_block_additional_residuals=tuple(down),
                         mid_block_additional_residual=mid, **kwargs)


def control_tensor(rgb, device) -> Any:
    """A control picture (uint8 H×W×3) as the float (1, 3, H, W) tensor in [0, 1] ControlNets take."""
    import numpy as np
    import torch

    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    return t.to(device.device, device.dtype)
