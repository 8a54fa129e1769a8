"""What the GPU fast path (:mod:`engine.fastpath`) specialises a compiled, CUDA-graphed denoiser on: the
:class:`ShapeKey` of a denoising loop (the model's identity and every tensor argument's shape and dtype), the
environment compiled artefacts depend on, and the walks over a denoiser call's arguments (tuples, lists and dicts
of tensors) that the keys and the graph capture share. No threads, no state; torch is imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


def walk_tensors(tree, path: str = ""):
    """(path, tensor) for every tensor in a call's arguments (tuples, lists and dicts, in their order)."""
    import torch

    if isinstance(tree, dict):
        for name, value in tree.items():
            yield from walk_tensors(value, f"{path}.{name}" if path else str(name))
    elif isinstance(tree, (tuple, list)):
        for i, value in enumerate(tree):
            yield from walk_tensors(value, f"{path}.{i}" if path else str(i))
    elif torch.is_tensor(tree):
        yield path, tree


def map_tensors(tree, fn):
    """``tree`` with every tensor replaced by ``fn(tensor)``; other values kept."""
    import torch

    if isinstance(tree, dict):
        return {name: map_tensors(value, fn) for name, value in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(value, fn) for value in tree)
    return fn(tree) if torch.is_tensor(tree) else tree


@dataclass(frozen=True)
class ShapeKey:
    """Everything a compiled, graphed denoiser is specialised on. A new key means a new compile (or eager)."""

    model: str  # model identity: path, weights hash and denoiser config
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # every tensor argument: (path, shape, dtype), sample first

    @property
    def latent(self) -> tuple[int, ...]:
        """Shape of the latents the denoiser gets (CFG batch included)."""
        return self.inputs[0][1]

    @property
    def dtype(self) -> str:
        return self.inputs[0][2]

    @property
    def label(self) -> str:
        if len(self.latent) == 4:
            b, _, h, w = self.latent
            return f"{w}x{h} latents, batch {b}, {self.dtype}"
        return f"{'x'.join(map(str, self.latent))} latents, {self.dtype}"

    def digest(self, env: str = "") -> str:
        text = json.dumps([env, self.model, self.inputs])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def model_identity(model) -> str:
    """A loaded model's identity for compiled artefacts: its path, weights hash and denoiser configuration."""
    config = json.dumps(dict(model.family.denoiser.config), sort_keys=True, default=str)
    conf_hash = hashlib.sha256(config.encode("utf-8")).hexdigest()[:12]
    return f"{Path(model.entry.path).resolve()}|{model.model_hash}|{conf_hash}"


def shape_key(identity: str, example: tuple[tuple, dict]) -> ShapeKey:
    """The key of one denoising loop from an example of the denoiser's arguments (``Family.example_inputs``):
    the shape and dtype of every tensor, latents (CFG batch included) first."""
    inputs = tuple((path, tuple(int(s) for s in t.shape), str(t.dtype).replace("torch.", ""))
                   for path, t in walk_tensors(example))
    return ShapeKey(identity, inputs)


def environment() -> str:
    """What compiled artefacts depend on besides the model: torch and the GPU."""
    import torch

    parts = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.append(f"cuda {torch.version.cuda} {torch.cuda.get_device_name(0)}")
    return ", ".join(parts)


def zero_inputs(example: tuple[tuple, dict], device: str) -> tuple[tuple, dict]:
    """Zero-filled denoiser arguments shaped like ``example``, on ``device``, made like the loop makes its own
    (call inside ``torch.inference_mode()``: Dynamo guards on it). The timestep stays a 0-d float32 tensor."""
    import torch

    return map_tensors(example, lambda t: torch.zeros(t.shape, dtype=t.dtype, device=device))
