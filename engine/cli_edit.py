"""Picture editing on the command line: the options of ``darkroom generate`` that start from pictures.

    darkroom generate "a castle at dusk" --init-image photo.jpg --strength 0.6
    darkroom generate "a red door" --init-image house.png --mask door.png --mask-blur 8 --only-masked
    darkroom generate "a wide beach" --init-image beach.png --outpaint 128,128,0,0
    darkroom generate "a fox" --hires 2 --hires-strength 0.5 --hires-upscaler lanczos
    darkroom generate "a fox" --control edges.png --control-model canny-sd15 --control-preprocess canny

:func:`plan_edits` checks every option (with the request's own parts, so the messages are the window's) and reads
every picture before anything is stored or any model loads; :meth:`EditPlan.build` then stores the pictures by
content under the folder the images are saved into (the gallery, or ``--out``), so each saved image's recipe
names them by hash, relative to that folder (``engine.images.recipe_to_store``). Never imports Qt; runs
on the command line's main thread.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DarkroomError
from .images import ImageInputError

_PREPROCESSORS = ("none", "canny")
_MASK_OPTIONS = ("mask_blur", "invert_mask", "only_masked", "mask_padding")
_HIRES_OPTIONS = ("hires_strength", "hires_upscaler", "hires_steps")
_CONTROL_OPTIONS = ("control_model", "control_weight", "control_start", "control_end", "control_preprocess")
#: A stand-in picture reference: values are checked with the request's parts before any picture is stored.
_UNSTORED = {"sha256": "0" * 64, "path": "-"}


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """The editing options of ``darkroom generate`` (values are text, checked by :func:`plan_edits`)."""
    g = parser.add_argument_group(
        "editing", "Start from a picture (img2img), repaint part of it (inpainting) or extend it (outpainting), "
                   "refine at a larger size (hires fix), or steer the layout with a control picture (ControlNet). "
                   "Without --size, the size follows the picture's aspect ratio at the model's native pixel count.")
    g.add_argument("--init-image", type=Path, default=None, metavar="PATH", help="the picture to start from")
    g.add_argument("--strength", default=None, metavar="S",
                   help="how much of the picture is repainted, 0 (none) to 1 (all; default 0.75)")
    g.add_argument("--resize", default=None, metavar="fit|fill|stretch",
                   help="fitting a picture of another size: fit inside and extend the edges (default), fill and "
                        "crop, or stretch")
    g.add_argument("--mask", type=Path, default=None, metavar="PATH",
                   help="inpainting: white pixels of this picture are repainted (needs --init-image)")
    g.add_argument("--mask-from-alpha", action="store_true",
                   help="inpainting: the transparent pixels of --mask (or of --init-image) are repainted "
                        "(needs --init-image)")
    g.add_argument("--mask-blur", default=None, metavar="N", help="soften the mask's edge by N pixels (default 4)")
    g.add_argument("--invert-mask", action="store_true", help="repaint everything but the mask")
    g.add_argument("--only-masked", action="store_true",
                   help="work on the masked area alone, at the full size, and paste it back")
    g.add_argument("--mask-padding", default=None, metavar="N",
                   help="with --only-masked: pixels of context around the mask (default 32)")
    g.add_argument("--outpaint", default=None, metavar="L,R,U,D",
                   help="extend the picture by these pixels left, right, up and down (needs --init-image)")
    g.add_argument("--hires", default=None, metavar="SCALE",
                   help="hires fix: upscale the picture SCALE times (1 to 4) and refine it in a second pass")
    g.add_argument("--hires-strength", default=None, metavar="S", help="the second pass's strength (default 0.5)")
    g.add_argument("--hires-upscaler", default=None, metavar="latent|lanczos", help="how to upscale (default latent)")
    g.add_argument("--hires-steps", default=None, metavar="N", help="steps of the second pass (default: --steps)")
    g.add_argument("--control", type=Path, action="append", default=None, metavar="PATH",
                   help="ControlNet: a control picture; repeat for several. The --control-* options below are "
                        "given once (for every control) or once per --control, in the same order")
    g.add_argument("--control-model", action="append", default=None, metavar="PATH_OR_NAME",
                   help="the control model: a folder or .safetensors file, or a name in the models' controlnet folder")
    g.add_argument("--control-weight", action="append", default=None, metavar="W",
                   help="how strongly it steers, 0 to 2 (default 1)")
    g.add_argument("--control-start", action="append", default=None, metavar="F",
                   help="the fraction of the steps where it starts steering (default 0)")
    g.add_argument("--control-end", action="append", default=None, metavar="F",
                   help="the fraction of the steps where it stops (default 1)")
    g.add_argument("--control-preprocess", action="append", default=None, metavar="none|canny",
                   help="turn the picture into the control's input first: canny edges, or none (default)")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _usage(message: str):
    from .cli import EXIT_USAGE, CliError

    return CliError(message, EXIT_USAGE)


def _number(text: str | None, name: str, whole: bool = False) -> Any:
    if text is None:
        return None
    try:
        return int(text, 10) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _usage(f"{_option(name)} must be {kind}, not {text!r}.") from None


def _outpaint(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sides = tuple(int(s, 10) for s in text.split(","))
    except ValueError:
        sides = ()
    if len(sides) != 4:
        raise _usage(f"--outpaint takes the pixels to add left,right,up,down (e.g. 64,64,0,0), not {text!r}.")
    return sides


def _per_control(args, name: str, count: int, default: Any) -> list:
    given = getattr(args, name)
    if given is None:
        return [default] * count
    if len(given) == 1:
        return given * count
    if len(given) == count:
        return list(given)
    raise _usage(f"Give {_option(name)} once, or once per --control ({count} times); it was given {len(given)} times.")


def _read(path: Path, option: str):
    from .edit import load_picture

    try:
        return load_picture(path, option)
    except ImageInputError as exc:
        raise _usage(f"{option} {path}: {exc.message}") from None


def _check_needs(args) -> None:
    """Options that only mean something with another one."""
    source = args.init_image is not None
    needs = [(n, "--init-image") for n in ("strength", "resize") if getattr(args, n) is not None and not source]
    needs += [(n, "--mask or --mask-from-alpha") for n in _MASK_OPTIONS
              if getattr(args, n) not in (None, False) and args.mask is None and not args.mask_from_alpha]
    needs += [(n, "--hires") for n in _HIRES_OPTIONS if getattr(args, n) is not None and args.hires is None]
    needs += [(n, "--control") for n in _CONTROL_OPTIONS if getattr(args, n) is not None and not args.control]
    if needs:
        name, other = needs[0]
        raise _usage(f"{_option(name)} needs {other}.")
    if not source:
        for name, what in (("mask", "inpainting repaints part of a picture"),
                           ("mask_from_alpha", "inpainting repaints part of a picture"),
                           ("outpaint", "outpainting extends a picture")):
            if getattr(args, name) not in (None, False):
                raise _usage(f"{_option(name)} needs --init-image: {what}.")
    if args.control and args.control_model is None:
        raise _usage("--control needs --control-model: the control model that reads the picture.")


def has_edits(args) -> bool:
    return any(getattr(args, n, None) not in (None, False) for n in (
        "init_image", "strength", "resize", "mask", "mask_from_alpha", "outpaint", "hires", "control",
        *_MASK_OPTIONS, *_HIRES_OPTIONS, *_CONTROL_OPTIONS))


@dataclass(frozen=True)
class EditPlan:
    """Checked editing options with their pictures read: ``values`` (the request's core fields, sized) and the
    keyword arguments of ``edit_parts``."""

    values: dict[str, Any]
    parts: dict[str, Any]

    def build(self, root: Path):
        """Store the pictures under ``root`` and return the BuiltRequest, its notices holding what the pictures
        need to say (a mask resized). Raises CliError."""
        from .cli import EXIT_FAILED, CliError
        from .edit import check_pictures, edit_parts
        from .request import ValidationError, build_request

        try:
            parts = edit_parts(root, **self.parts)
            built = build_request(**self.values, **parts)
            notes = check_pictures(built.request)
        except (ValidationError, ImageInputError) as exc:
            raise _usage(exc.message if isinstance(exc, DarkroomError) else str(exc)) from None
        except DarkroomError as exc:  # the folder cannot be written
            raise CliError(exc.message, EXIT_FAILED) from None
        return dataclasses.replace(built, notices=built.notices + tuple(notes))


def plan_edits(args, values: dict[str, Any]) -> EditPlan | None:
    """The editing options of ``args`` checked and their pictures read, or None without any. ``values`` are the
    core fields sized for text-to-image (the model's native size unless --size). Raises CliError."""
    if not has_edits(args):
        return None
    from .edit import ControlInput, default_size
    from .request import HiresPart, ValidationError, build_request

    _check_needs(args)
    strength = _number(args.strength, "strength")
    blur, padding = _number(args.mask_blur, "mask_blur", True), _number(args.mask_padding, "mask_padding", True)
    outpaint = _outpaint(args.outpaint)
    hires = None
    if args.hires is not None:
        hires = {"scale": _number(args.hires, "hires"), "strength": _number(args.hires_strength, "hires_strength"),
                 "upscaler": args.hires_upscaler, "steps": _number(args.hires_steps, "hires_steps", True)}
        hires = {k: v for k, v in hires.items() if v is not None}
    count = len(args.control or ())
    controls = list(zip(
        args.control or (), _per_control(args, "control_model", count, None),
        [_number(v, "control_weight") for v in _per_control(args, "control_weight", count, "1")],
        [_number(v, "control_start") for v in _per_control(args, "control_start", count, "0")],
        [_number(v, "control_end") for v in _per_control(args, "control_end", count, "1")],
        _per_control(args, "control_preprocess", count, "none")))
    for *_, preprocess in controls:
        if preprocess not in _PREPROCESSORS:
            raise _usage(f"--control-preprocess must be {' or '.join(_PREPROCESSORS)}, not {preprocess!r}.")

    source = _read(args.init_image, "--init-image") if args.init_image is not None else None
    mask = _read(args.mask, "--mask") if args.mask is not None else None
    if args.mask_from_alpha and (mask or source).alpha is None:
        raise _usage(f"--mask-from-alpha: {args.mask or args.init_image} has no transparency to use as a mask.")
    pictures = [_read(c[0], "--control") for c in controls]

    values = dict(values)
    if source is not None and args.size is None:
        width, height = source.size
        if outpaint is not None:
            width, height = width + outpaint[0] + outpaint[1], height + outpaint[2] + outpaint[3]
        values["width"], values["height"] = default_size((width, height), (values["width"], values["height"]))
    # Every value checked by the request's own parts, before any picture is stored.
    dry: dict[str, Any] = {"hires": hires, "outpaint": None if outpaint is None else dict(zip(
        ("left", "right", "up", "down"), outpaint))}
    if source is not None:
        dry["source"] = {"image": _UNSTORED, "strength": 0.75 if strength is None else strength,
                         "resize": args.resize or "fit"}
    if mask is not None or args.mask_from_alpha:
        dry["mask"] = {"image": _UNSTORED, **({} if blur is None else {"blur": blur}),
                       **({} if padding is None else {"padding": padding})}
    dry["controls"] = [{"model": m, "image": _UNSTORED, "weight": w, "start": s, "end": e}
                       for _, m, w, s, e, _ in controls]
    try:
        build_request(**values, **dry)
    except ValidationError as exc:
        raise _usage(str(exc)) from None
    _check_control_models(controls)

    parts: dict[str, Any] = {"source": source, "mask": mask, "mask_from_alpha": args.mask_from_alpha,
                             "mask_invert": args.invert_mask, "only_masked": args.only_masked,
                             "outpaint": outpaint, "hires": HiresPart(**hires) if hires else None,
                             "controls": tuple(ControlInput(p, m, w, s, e, pre) for p, (_, m, w, s, e, pre)
                                               in zip(pictures, controls))}
    for name, value in (("strength", strength), ("resize", args.resize), ("mask_blur", blur),
                        ("mask_padding", padding)):
        if value is not None:
            parts[name] = value
    return EditPlan(values, parts)


def _check_control_models(controls) -> None:
    """Every control model is found before the engine starts (as --model is)."""
    from .cli import EXIT_FAILED, CliError
    from .edit.control import find_control_model

    for _, model, *_ in controls:
        try:
            find_control_model(model)
        except DarkroomError as exc:
            raise CliError(exc.message, EXIT_FAILED) from None


def output_root(args) -> Path:
    """The folder the images are saved into, where their pictures are stored: ``--out``, or the gallery folder.
    Raises CliError when a chosen gallery folder's drive is missing (nothing is created there)."""
    from . import paths
    from .cli import EXIT_FAILED, CliError
    from .settings import load as load_settings

    if args.out is not None:
        return args.out
    chosen = load_settings()[0].gallery_dir
    if not chosen:
        return paths.default_gallery_dir()
    root = Path(chosen).expanduser()
    if not root.is_dir() and not root.parent.is_dir():
        raise CliError(f"The gallery folder {root} does not exist (is a drive disconnected?). Reconnect it or "
                       "choose another gallery folder.", EXIT_FAILED)
    return root
