"""The infotext keys of picture edits: img2img, inpainting, outpainting, hires fix and ControlNet.

:func:`edit_params` writes them as AUTOMATIC1111 does (``Denoising strength``, ``Mask blur``, ``Hires upscale``,
sd-webui-controlnet's ``ControlNet 0``…); :func:`read_edit_params` reads them back from anyone's infotext.

Infotext never carries pictures, so reading cannot rebuild a source image, mask or control input: only the hires
fix, which needs no picture, becomes a recipe part. The other settings come back as checked keyword arguments for
:func:`engine.edit.edit_parts`, to be used once the pictures are chosen again. Every value is untrusted: each one is
checked by the request part that owns it, and a bad one becomes a warning. Pure text code: any thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..request import ControlPart, HiresPart, ImageRef, MaskPart, OutpaintPart, SourceImage
from .parameters import _as_float, _as_int, short

#: A1111's resize mode labels (its img2img menu) for Darkroom's modes. Stock A1111 does not write this key into
#: infotext; other front ends do, with these labels.
RESIZE_LABELS = {"stretch": "Just resize", "fill": "Crop and resize", "fit": "Resize and fill"}
UPSCALER_LABELS = {"latent": "Latent", "lanczos": "Lanczos"}
#: Most ControlNet units read from one infotext.
MAX_CONTROLS = 8

STRENGTH, HIRES_STRENGTH = "Denoising strength", "Hires denoising strength"
#: The keys :func:`read_edit_params` understands (besides ``ControlNet N``).
EDIT_KEYS = frozenset({
    STRENGTH, HIRES_STRENGTH, "Resize mode", "Mask blur", "Mask mode", "Inpaint area", "Masked area padding",
    "Outpaint", "Hires upscale", "Hires upscaler", "Hires steps",
})
_CONTROL_KEY = re.compile(r"ControlNet (\d{1,2})")
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")
# Reading only checks values with the request's parts; this reference never reaches a request.
_NO_IMAGE = ImageRef("0" * 64, "-")


def is_edit_key(key: str) -> bool:
    return key in EDIT_KEYS or _CONTROL_KEY.fullmatch(key) is not None


# -- writing --------------------------------------------------------------------------------------------------
def _unit_value(text: str) -> str:
    # sd-webui-controlnet drops a whole unit whose values hold "," or ":", so a model name must not.
    return text.replace(",", "_").replace(":", "_").strip() or "-"


def edit_params(request) -> dict[str, object]:
    """The edit keys of ``request``, in A1111's order, values as text (empty for a text-to-image request)."""
    from .infotext import format_number, model_label

    params: dict[str, object] = {}
    source, mask, hires = request.source, request.mask, request.hires
    if source is not None:
        params[STRENGTH] = format_number(source.strength)
    if mask is not None:
        params["Mask blur"] = mask.blur
        if mask.invert:
            params["Mask mode"] = "Inpaint not masked"
        if mask.only_masked:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = mask.padding
    if source is not None and request.outpaint is None and not (mask is not None and mask.only_masked):
        params["Resize mode"] = RESIZE_LABELS[source.resize]  # only where the source is resized to the request
    if request.outpaint is not None:
        # No tool has a standard key for outpainting by pixels per side; Darkroom writes its own.
        params["Outpaint"] = ",".join(str(side) for side in request.outpaint.sides)
    if hires is not None:
        # A1111 cannot make img2img with a hires fix, so its one "Denoising strength" is the hires pass's; with a
        # source image that key is the source's and the hires pass gets a key of Darkroom's own.
        params[HIRES_STRENGTH if source is not None else STRENGTH] = format_number(hires.strength)
        params["Hires upscale"] = format_number(hires.scale)
        if hires.steps:
            params["Hires steps"] = hires.steps
        params["Hires upscaler"] = UPSCALER_LABELS[hires.upscaler]
    for i, control in enumerate(request.controls):
        # The stored control image is already preprocessed (a canny map), so A1111 should apply no module.
        unit = {"Module": "none", "Model": _unit_value(model_label(control.model)),
                "Weight": format_number(control.weight), "Guidance Start": format_number(control.start),
                "Guidance End": format_number(control.end)}
        params[f"ControlNet {i}"] = ", ".join(f"{k}: {v}" for k, v in unit.items())
    return params


# -- reading --------------------------------------------------------------------------------------------------
def _checked(make: Callable[[], Any], what: str, raw: str, warnings: list[str]) -> bool:
    """Whether ``make()`` (a part built from one read value) accepts it; a refusal becomes a warning."""
    try:
        make()
        return True
    except (ValueError, TypeError) as exc:
        warnings.append(f"The {what} {short(raw, 40)!r} was ignored: {exc}")
        return False


def _number(params: Mapping[str, str], key: str, whole: bool, warnings: list[str]) -> Any:
    raw = params[key]
    value = _as_int(raw) if whole else _as_float(raw)
    if value is None:
        kind = "a whole number" if whole else "a number"
        warnings.append(f"The {key.lower()} {short(raw, 40)!r} is not {kind} and was ignored.")
    return value


def _choice(params: Mapping[str, str], key: str, choices: Mapping[str, Any], warnings: list[str]) -> Any:
    raw = params[key]
    value = choices.get(raw.strip().lower())
    if value is None:
        warnings.append(f"The {key.lower()} {short(raw, 40)!r} is not one Darkroom knows and was ignored.")
    return value


def read_edit_params(params: Mapping[str, str], warnings: list[str]) -> tuple[HiresPart | None, dict[str, Any]]:
    """The hires fix (or None) and the checked edit settings (keyword arguments for ``edit_parts``: strength,
    resize, mask_blur, mask_invert, only_masked, mask_padding, outpaint, controls) an infotext's parameters hold.
    Never raises for string values; problems are appended to ``warnings``."""
    edit: dict[str, Any] = {}
    has_hires = any(k in params for k in ("Hires upscale", "Hires upscaler", "Hires steps"))
    # With a hires fix, A1111's "Denoising strength" is the hires pass's unless Darkroom wrote both keys.
    source_strength = STRENGTH in params and (not has_hires or HIRES_STRENGTH in params)
    if source_strength:
        v = _number(params, STRENGTH, False, warnings)
        if v is not None and _checked(lambda: SourceImage(_NO_IMAGE, v), "denoising strength", params[STRENGTH], warnings):
            edit["strength"] = v
    if "Resize mode" in params:
        labels = {label.lower(): mode for mode, label in RESIZE_LABELS.items()}
        v = _choice(params, "Resize mode", {**labels, "just resize (latent upscale)": "stretch"}, warnings)
        if v is not None:
            edit["resize"] = v
    for key, name, whole in (("Mask blur", "mask_blur", True), ("Masked area padding", "mask_padding", True)):
        if key in params:
            v = _number(params, key, whole, warnings)
            kwargs = {"blur" if name == "mask_blur" else "padding": v}
            if v is not None and _checked(lambda kw=kwargs: MaskPart(_NO_IMAGE, **kw), key.lower(), params[key],
                                          warnings):
                edit[name] = v
    if "Mask mode" in params:
        v = _choice(params, "Mask mode", {"inpaint masked": False, "inpaint not masked": True}, warnings)
        if v is not None:
            edit["mask_invert"] = v
    if "Inpaint area" in params:
        v = _choice(params, "Inpaint area", {"whole picture": False, "only masked": True}, warnings)
        if v is not None:
            edit["only_masked"] = v
    if "Outpaint" in params:
        sides = [_as_int(s) for s in params["Outpaint"].split(",", 4)]
        if len(sides) != 4 or None in sides:
            warnings.append(f"The outpainting {short(params['Outpaint'], 40)!r} is not four whole numbers and was ignored.")
        elif _checked(lambda: OutpaintPart(*sides), "outpainting", params["Outpaint"], warnings):
            edit["outpaint"] = tuple(sides)
    controls = _read_controls(params, warnings)
    if controls:
        edit["controls"] = controls
    hires = _read_hires(params, warnings) if has_hires else None
    return hires, edit


def _read_hires(params: Mapping[str, str], warnings: list[str]) -> HiresPart | None:
    if "Hires upscale" not in params:
        warnings.append("The hires fix of this image gives no upscale factor and was not restored.")
        return None
    scale = _number(params, "Hires upscale", False, warnings)
    if scale is None or not _checked(lambda: HiresPart(scale), "hires upscale", params["Hires upscale"], warnings):
        return None
    values: dict[str, Any] = {"scale": scale}
    key = HIRES_STRENGTH if HIRES_STRENGTH in params else STRENGTH
    if key in params:
        v = _number(params, key, False, warnings)
        if v is not None and _checked(lambda: HiresPart(strength=v), "hires denoising strength", params[key], warnings):
            values["strength"] = v
    if "Hires steps" in params:
        v = _number(params, "Hires steps", True, warnings)
        if v is not None and _checked(lambda: HiresPart(steps=v), "hires steps", params["Hires steps"], warnings):
            values["steps"] = v
    if "Hires upscaler" in params:
        raw = params["Hires upscaler"].strip()
        if raw.lower().startswith("latent"):
            values["upscaler"] = "latent"
        else:
            values["upscaler"] = "lanczos"
        if raw.lower() not in ("latent", "lanczos"):
            warnings.append(f"The hires upscaler {short(raw, 40)!r} is not in Darkroom; "
                            f"{UPSCALER_LABELS[values['upscaler']]} is used instead.")
    return HiresPart(**values)


def _read_controls(params: Mapping[str, str], warnings: list[str]) -> tuple[dict[str, Any], ...]:
    """sd-webui-controlnet's units (``ControlNet 0: "Module: canny, Model: name [hash], Weight: 1, …"``) as
    ``ControlInput`` settings without their picture, in unit order."""
    units = sorted((int(m.group(1)), key) for key in params if (m := _CONTROL_KEY.fullmatch(key)))
    if len(units) > MAX_CONTROLS:
        warnings.append(f"Only the first {MAX_CONTROLS} ControlNet units were read.")
    controls = []
    for _, key in units[:MAX_CONTROLS]:
        items: dict[str, str] = {}
        for item in params[key].split(",", 64)[:64]:
            name, sep, value = item.partition(":")
            if sep:
                items.setdefault(name.strip().lower(), value.strip())
        model = _HASH_SUFFIX.sub("", items.get("model", ""))[:255]
        module = items.get("module", items.get("preprocessor", "none")).lower()
        values = {"model": model, "weight": 1.0, "start": 0.0, "end": 1.0}
        for field, name in (("weight", "weight"), ("start", "guidance start"), ("end", "guidance end")):
            if name in items:
                v = _as_float(items[name])
                if v is None:
                    warnings.append(f"{key}'s {name} {short(items[name], 40)!r} is not a number and was ignored.")
                else:
                    values[field] = v
        if not _checked(lambda v=values: ControlPart(v["model"], _NO_IMAGE, v["weight"], v["start"], v["end"]),
                        f"{key} unit", params[key], warnings):
            continue
        if module not in ("none", "canny"):
            warnings.append(f"{key}'s preprocessor {short(module, 40)!r} is not in Darkroom; give its picture "
                            "already preprocessed.")
        controls.append({**values, "preprocess": "canny" if module == "canny" else "none"})
    return tuple(controls)
