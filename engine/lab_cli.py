"""The Diffusion Lab on the command line: ``darkroom grid`` (compare grids, AUTOMATIC1111's X/Y/Z plot) and the
``--animation`` option of ``darkroom generate`` (noise → image, one frame per step).

    darkroom grid "a red apple" --x cfg=3,5,7 --y seed=1,2 [--z steps=10,20] --out grid.png [generate's options]

Every combination of the axes' values is made with everything else fixed (:func:`engine.grid.expand`); each cell
is saved with its full recipe (into the gallery, or ``--cells DIR``) and the labelled grid is written to
``--out`` as a PNG carrying the first cell's recipe (as A1111 does for its grids). Never imports Qt.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from .animation import FORMATS, export_animation
from .errors import DarkroomError


# -- darkroom generate --animation ---------------------------------------------------------------------------------
def animation_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"an animation is a {' or '.join(FORMATS)} file, not {text!r}")
    return path


def add_animation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--animation", type=animation_path, default=None, metavar="FILE.webp",
                        help="also write noise → image as an animated WebP or GIF: the model's guess (x0) at every "
                             "step, then the final picture (picture k of a batch gets -k+1 before the extension)")


def animation_file(path: Path, index: int, count: int) -> Path:
    """Where image ``index`` of ``count`` writes its animation: ``path`` for the first, ``NAME-2.webp``… after."""
    return path if index == 0 or count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def write_animation(ready, path: Path, caption: str = "") -> Path:
    """The replay frames of a finished image (``ImageReady``) and the image itself, as an animation at ``path``.
    Raises DarkroomError."""
    if not ready.replay:
        raise DarkroomError("This picture has no recorded steps to animate.")
    target = animation_file(path, ready.image_index, ready.image_count)
    return export_animation([*ready.replay, ready.image], target, caption=caption)


# -- darkroom grid -----------------------------------------------------------------------------------------------
def register(subparsers) -> argparse.ArgumentParser:
    """Add ``grid`` to the command line's sub-parsers; its handler is :func:`cmd_grid`."""
    from .cli import _add_field_options

    parser = subparsers.add_parser(
        "grid", help="compare settings side by side: one picture per combination, in a labelled grid",
        description="Make one picture per combination of up to three axes (as AUTOMATIC1111's X/Y/Z plot), "
                    "everything else fixed, and write the labelled grid. An axis is NAME=V1,V2,...: any option "
                    "of generate (cfg, steps, seed, sampler, model...), prompt=SEARCH,REPLACE1,... "
                    "(search and replace), strength=... or lora:NAME=....")
    _add_field_options(parser)
    parser.add_argument("--x", required=True, metavar="AXIS", help="across, e.g. cfg=3,5,7")
    parser.add_argument("--y", default=None, metavar="AXIS", help="down, e.g. seed=1,2")
    parser.add_argument("--z", default=None, metavar="AXIS", help="one grid per value, stacked")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="where to write the grid")
    parser.add_argument("--cells", type=Path, default=None, metavar="DIR",
                        help="write each cell's PNG into DIR instead of the gallery")
    parser.add_argument("--device", choices=("cuda", "mps", "cpu"), default=None, help="force a device")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=cmd_grid)
    return parser


def cmd_grid(args) -> int:
    from .cli import EXIT_USAGE, CliError, check_out_folder, generation_values
    from .grid import GridError, expand, parse_axis
    from .models import native_size, resolve
    from .request import ValidationError, build_request

    values = generation_values(args)
    values["width"], values["height"] = args.size or native_size(values.get("model", ""))
    try:
        base = build_request(**values).request
        axes = [parse_axis(spec) for spec in (args.x, args.y, args.z) if spec]
        if args.z and not args.y:
            raise GridError("A --z axis needs a --y axis.")
        cells = expand(base, axes)
    except (ValidationError, GridError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.out.suffix.lower() != ".png":
        raise CliError(f"The grid is written as a PNG; --out must end in .png, not {args.out.name!r}.", EXIT_USAGE)
    check_out_folder(args.out.parent)
    if args.cells is not None:
        check_out_folder(args.cells)
    for model in dict.fromkeys(cell.request.model for cell in cells):
        try:
            resolve(model)  # every model of a model axis, before the engine starts
        except DarkroomError as exc:
            raise CliError(exc.message) from None
    return run_grid(cells, axes, args)


def run_grid(cells, axes, args) -> int:
    """Make every cell, save each as it finishes, then write the labelled grid. Returns the exit code."""
    from .cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, CliError, save_to_folder
    from .engine import Engine, EngineOptions, JobOptions, PreviewOptions
    from .events import Cancelled, Failed, Finished, ImageReady
    from .gallery import Gallery, store
    from .grid import compose
    from .settings import load as load_settings

    gallery = None if args.cells else Gallery(load_settings()[0].gallery_dir or None)
    done = threading.Event()
    lock = threading.Lock()
    state: dict = {"code": EXIT_OK, "ended": 0, "images": {}, "first": None}
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(cells), unit="picture", file=sys.stderr, leave=False)

    def fail(code: int, message: str) -> None:
        if state["code"] == EXIT_OK:
            state["code"], state["error"] = code, message
        engine.cancel_all()

    def on_event(event) -> None:
        cell = by_job.get(event.job_id)
        if cell is None:
            return
        with lock:
            if isinstance(event, ImageReady):
                try:
                    gallery.save(event) if gallery else save_to_folder(event, args.cells)
                except DarkroomError as exc:
                    fail(EXIT_FAILED, exc.message)
                state["images"][cell.coords] = event.image
                if state["first"] is None or cell is cells[0]:
                    state["first"] = event
                if bar is not None:
                    bar.update(1)
            elif isinstance(event, (Finished, Failed, Cancelled)):
                if isinstance(event, Failed):
                    fail(EXIT_FAILED, event.message)
                elif isinstance(event, Cancelled):
                    fail(EXIT_CANCELLED, "Cancelled.")
                state["ended"] += 1
                if state["ended"] == len(cells):
                    done.set()

    engine = Engine(on_event, EngineOptions(device=args.device, preview=PreviewOptions(mode="off")))
    by_job: dict = {}
    with lock:  # no event is handled before every cell is known
        for cell in cells:
            by_job[engine.submit(cell.request, JobOptions(replay=False))] = cell
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        engine.cancel_all()
        done.wait(5)
        state["code"], state["error"] = EXIT_CANCELLED, "Cancelled."
    finally:
        engine.shutdown()
        if gallery is not None:
            gallery.close()
        if bar is not None:
            bar.close()
    if state["code"] != EXIT_OK:
        raise CliError(state.get("error", "The grid was not finished."), state["code"])
    first = state["first"]
    height, width = first.image.shape[:2]
    grid = compose(state["images"], axes, (width, height))
    from dataclasses import replace

    try:
        store.write_file_replacing(args.out, Gallery.encode(replace(first, image=grid, replay=(), guidance=None)))
    except OSError as exc:
        raise CliError(store.disk_error(exc, args.out.parent, "save the grid").message) from None
    print(args.out, flush=True)
    return EXIT_OK
