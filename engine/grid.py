"""Compare grids (AUTOMATIC1111's X/Y/Z plot): axes over recipe settings, expanded into one request per cell.

An axis is written ``name=v1,v2,…`` (a value holding a comma may be quoted: ``prompt="red, blue",green``):

- any core field with a command-line option in the registry (``seed``, ``steps``, ``cfg``, ``sampler``,
  ``model``, ``batch``…), values parsed and checked by the field itself;
- ``prompt``: search and replace — the first value is the text searched for in the prompt (and the negative
  prompt), each value replaces it in turn, as A1111's "Prompt S/R" does;
- ``strength``: the denoising strength of the source image (a request without one is refused);
- ``lora:NAME``: the weight of LoRA ``NAME`` (added to the recipe when it is not in it yet).

Everything not on an axis stays as in the base request; each cell is one image (batch of one). Pure recipe code:
safe on any thread; composing the labelled picture uses Pillow.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .fields import FIELDS
from .request import GenerationRequest, LoraRef, ValidationError

MAX_AXES = 3
MAX_CELLS = 1024
#: Axis names that are not plain registry fields.
SPECIAL_AXES = ("prompt", "strength", "lora:NAME")


class GridError(ValueError):
    """An axis that cannot be used, with a message for people."""


@dataclass(frozen=True)
class Axis:
    name: str  # a registry field name, "prompt", "strength" or "lora:NAME"
    values: tuple[Any, ...]  # typed values (for "prompt": the replacement texts, first = the searched text)
    labels: tuple[str, ...]  # what the grid shows for each value

    @property
    def title(self) -> str:
        return {"prompt": "Prompt S/R", "strength": "Denoising strength"}.get(self.name, self._field_label())

    def _field_label(self) -> str:
        if self.name.startswith("lora:"):
            return f"LoRA {self.name[5:]}"
        return next(f.label for f in FIELDS if f.name == self.name)


def _option_fields() -> dict[str, Any]:
    """Axis name → field: the command line's option names (``batch`` for batch_count) and the field names."""
    names: dict[str, Any] = {}
    for f in FIELDS:
        if f.cli and f.name not in ("prompt", "negative_prompt"):
            names[f.cli.lstrip("-")] = f
            names[f.name] = f
    return names


def _split_values(text: str) -> list[str]:
    values = next(csv.reader([text], skipinitialspace=True), [])
    return [v.strip() for v in values if v.strip() != ""]


def parse_axis(spec: str) -> Axis:
    """``name=v1,v2,…`` as an axis. Raises GridError with a message naming the bad part."""
    name, sep, rest = spec.partition("=")
    name = name.strip().lower()
    if not sep or not name:
        raise GridError(f"An axis looks like cfg=3,5,7, not {spec[:60]!r}.")
    raw = _split_values(rest)
    if not raw:
        raise GridError(f"The axis {name!r} has no values.")
    if name == "prompt":
        if len(raw) < 2:
            raise GridError("A prompt axis needs the text to search for, then at least one replacement.")
        return Axis("prompt", tuple(raw), tuple(raw))
    if name == "strength" or name.startswith("lora:"):
        lo, hi, label = (0.0, 1.0, "Denoising strength") if name == "strength" else (-10.0, 10.0, "A LoRA weight")
        if name.startswith("lora:") and not name[5:].strip():
            raise GridError("A LoRA axis names its LoRA: lora:NAME=0.2,0.6,1.")
        values = []
        for v in raw:
            try:
                number = float(v)
            except ValueError:
                raise GridError(f"{label} must be a number, not {v[:40]!r}.") from None
            if not lo <= number <= hi:
                raise GridError(f"{label} must be from {lo:g} to {hi:g}; got {number:g}.")
            values.append(number)
        return Axis(name if name == "strength" else "lora:" + spec.partition("=")[0].strip()[5:].strip(),
                    tuple(values), tuple(raw))
    field = _option_fields().get(name)
    if field is None:
        known = ", ".join(sorted({*(f.cli.lstrip("-") for f in _option_fields().values()), "prompt", "strength"}))
        raise GridError(f"{name!r} cannot be an axis; use one of {known} or lora:NAME.")
    values = []
    for v in raw:
        try:
            parsed = field.parse(v)
        except ValueError as exc:
            raise GridError(str(exc)) from None
        if parsed is None:
            raise GridError(f"A {field.label.lower()} axis needs fixed values, not {v!r}.")
        values.append(parsed)
    return Axis(field.name, tuple(values), tuple(raw))


@dataclass(frozen=True)
class Cell:
    coords: tuple[int, ...]  # (x, y, z) index into the axes' values
    request: GenerationRequest


def _apply(request: GenerationRequest, axis: Axis, index: int) -> GenerationRequest:
    value = axis.values[index]
    if axis.name == "prompt":
        search = axis.values[0]
        return dataclasses.replace(request, prompt=request.prompt.replace(search, value),
                                   negative_prompt=request.negative_prompt.replace(search, value))
    if axis.name == "strength":
        if request.source is None:
            raise GridError("A strength axis needs a source image in the recipe.")
        return dataclasses.replace(request, source=dataclasses.replace(request.source, strength=value))
    if axis.name.startswith("lora:"):
        lora_name = axis.name[5:]
        # The axis sets the weight itself: no longer the prompt tag's (a rebuilt recipe keeps the axis's value).
        loras = [dataclasses.replace(lo, weight=value, from_prompt=False) if lo.name == lora_name else lo
                 for lo in request.loras]
        if not any(lo.name == lora_name for lo in request.loras):
            loras.append(LoraRef(lora_name, value))
        return dataclasses.replace(request, loras=tuple(loras))
    return dataclasses.replace(request, **{axis.name: value})


def expand(base: GenerationRequest, axes: Sequence[Axis]) -> list[Cell]:
    """One request per combination of axis values, x varying fastest. Raises GridError."""
    if not 1 <= len(axes) <= MAX_AXES:
        raise GridError(f"A grid has one to {MAX_AXES} axes.")
    if len({a.name for a in axes}) != len(axes):
        raise GridError("Each setting can be on one axis only.")
    count = int(np.prod([len(a.values) for a in axes]))
    if count > MAX_CELLS:
        raise GridError(f"That grid has {count} pictures; at most {MAX_CELLS} are made at once.")
    base = dataclasses.replace(base, batch_count=1)
    cells = []
    for coords in itertools.product(*(range(len(a.values)) for a in reversed(axes))):
        coords = tuple(reversed(coords))
        request = base
        for axis, index in zip(axes, coords):
            request = _apply(request, axis, index)
        try:  # the combination as a whole must still be a valid recipe (e.g. a size axis with rounding)
            request = GenerationRequest.from_dict(request.to_dict()).request
        except ValidationError as exc:
            raise GridError(str(exc)) from None
        cells.append(Cell(coords, request))
    return cells


def compose(images: dict[tuple[int, ...], np.ndarray], axes: Sequence[Axis], cell_size: tuple[int, int]) -> np.ndarray:
    """The labelled grid picture: x values across, y values down, one block per z value, stacked. Cells not
    finished yet are grey, so a grid can be shown filling in."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = cell_size
    nx = len(axes[0].values)
    ny = len(axes[1].values) if len(axes) > 1 else 1
    nz = len(axes[2].values) if len(axes) > 2 else 1
    font = ImageFont.load_default(size=max(10, min(28, w // 10)))
    pad = font.size + 10
    left = max((ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(lbl, font=font) for lbl in axes[1].labels),
               default=0) + 16 if len(axes) > 1 else 0
    left = int(left)
    block_h = pad + ny * h + (pad if nz > 1 else 0)
    canvas = Image.new("RGB", (left + nx * w, nz * block_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for z in range(nz):
        top = z * block_h
        if nz > 1:
            draw.text((4, top + 4), f"{axes[2].title}: {axes[2].labels[z]}", fill=(0, 0, 0), font=font)
            top += pad
        for x in range(nx):
            draw.text((left + x * w + w / 2, top + pad / 2), axes[0].labels[x], fill=(0, 0, 0), font=font, anchor="mm")
        for y in range(ny):
            if len(axes) > 1:
                draw.text((left - 8, top + pad + y * h + h / 2), axes[1].labels[y], fill=(0, 0, 0), font=font, anchor="rm")
            for x in range(nx):
                coords = (x, y, z)[: len(axes)]
                image = images.get(coords)
                box = (left + x * w, top + pad + y * h)
                if image is None:
                    draw.rectangle([box, (box[0] + w - 1, box[1] + h - 1)], fill=(200, 200, 200))
                else:
                    canvas.paste(Image.fromarray(np.ascontiguousarray(image)).resize((w, h)), box)
    return np.asarray(canvas)
