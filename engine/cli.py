"""The headless command line: ``darkroom generate``, ``darkroom models``, ``darkroom gallery`` and friends.

Never imports Qt. Bad input ends with a one-line message on stderr and a non-zero exit code (2 for bad usage),
never a traceback (``--debug`` shows one). Every subcommand sets ``handler``: a function of the parsed
arguments that returns the exit code. ``darkroom generate``'s options come from the field registry
(:data:`engine.fields.FIELDS`), so a field with a ``cli`` option is an option here without any edit; its picture
editing options (``--init-image``, ``--mask``, ``--hires``, ``--control``…) come from :mod:`engine.cli_edit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import __version__
from .errors import DarkroomError, ErrorKind
from .fields import FIELD, FIELDS
from .request import ValidationError, build_request

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
#: How long `generate --animation` waits, after the job, for the decoded replays of a model that previews by
#: decoding (the engine decodes them at once: about 20 ms a frame on one CPU thread for the bundled model)
DECODED_REPLAY_WAIT_S = 60.0


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, not {text!r}")
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, not {text!r}") from None


def _add_field_options(parser: argparse.ArgumentParser) -> None:
    """The prompt as the positional argument, and an option for every registry field that names one. Options
    default to None, meaning "the registry's default"; values are checked by build_request, not argparse."""
    prompt = FIELD["prompt"]
    parser.add_argument("prompt", help=prompt.tooltip.rstrip(".").lower())
    for field in FIELDS:
        if field.cli:
            parser.add_argument(field.cli, dest=field.name, default=None, metavar=field.cli_metavar or None,
                                help=field.help)
    parser.add_argument("--size", type=_size, default=None, metavar="WxH",
                        help="image size (default: the model's native size)")
    parser.add_argument("--scheduler", dest="sampler", default=None, help=argparse.SUPPRESS)  # its old name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkroom",
        description="Darkroom: watch pictures develop out of noise. Run without a command to open the app.",
        epilog="darkroom --self-test makes one picture with the bundled model and prints whether this "
               "installation works; darkroom --open-parameters PICTURE.png opens the app with a picture's "
               "parameters.",
    )
    parser.add_argument("--version", action="version", version=f"darkroom {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("app", help="open the Darkroom window (the default)")

    gen = sub.add_parser("generate", help="generate images from a prompt, headless",
                         description="Generate images from a prompt without opening the window.")
    _add_field_options(gen)
    gen.add_argument("--out", type=Path, default=None, metavar="DIR", help="write the PNGs into DIR instead of the gallery")
    gen.add_argument("--device", choices=("cuda", "mps", "cpu"), default=None, help="force a device")
    gen.add_argument("--memory", choices=("auto", "normal", "low"), default=None,
                     help="GPU memory mode: normal keeps the whole model on the GPU, low moves each part there only "
                          "while it runs (slower; for GPUs with little memory), auto picks by the model's size "
                          "(default: the app's setting, else auto)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=cmd_generate)

    # Imported here, not at the top: importing engine.cli (as the launcher does) must not import them.
    from .gallery.cli import register as register_gallery
    from .models_cli import register as register_models
    from .cli_edit import add_edit_options
    from .lab_cli import add_animation_option, register as register_grid

    add_animation_option(gen)
    add_edit_options(gen)
    register_models(sub)
    register_grid(sub)
    register_gallery(sub)
    try:
        from .train.cli import register as register_training
    except ImportError:  # the double-click bundle leaves the trainer out
        pass
    else:
        register_training(sub)
    return parser


def generation_values(args: argparse.Namespace) -> dict[str, Any]:
    """The registry fields given on the command line (the rest take their defaults in build_request)."""
    values = {"prompt": args.prompt}
    values.update({f.name: getattr(args, f.name) for f in FIELDS if f.cli and getattr(args, f.name) is not None})
    return values


def cmd_generate(args) -> int:
    from .cli_edit import output_root, plan_edits
    from .models import native_size

    values = generation_values(args)
    values["width"], values["height"] = args.size or native_size(values.get("model", ""))
    try:
        built = build_request(**values)
    except ValidationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    plan = plan_edits(args, values)  # every editing option and picture checked; nothing stored yet
    if args.out is not None:
        check_out_folder(args.out)  # before the model loads, not after the first image is made
    from .models import resolve

    try:
        resolve(built.request.model)  # fail fast, before the engine starts
    except DarkroomError as exc:
        raise CliError(exc.message) from None
    if plan is not None:
        built = plan.build(output_root(args))  # pictures stored where the images go, so their recipes find them
    for notice in built.notices:
        print(f"note: {notice}", file=sys.stderr)
    return run_generation(built.request, args)


def check_out_folder(folder: Path) -> None:
    """Make ``folder`` if needed and prove that a file can be written there. Raises :class:`CliError`."""
    from .gallery import store

    probe = folder / store.temp_name()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.unlink(probe)
    except OSError as exc:
        raise CliError(f"Cannot write images into {folder}: {exc.strerror or exc}. Choose another --out folder.") from None


def run_generation(request, args) -> int:
    from .engine import Engine, EngineOptions, PreviewOptions
    from .events import Cancelled, Failed, Finished, ImageReady, Progress, ReplayDecoded, Started
    from .gallery import Gallery
    from .settings import load as load_settings

    settings = load_settings()[0]
    gallery = None if args.out else Gallery(settings.gallery_dir or None)
    done = threading.Event()
    outcome: dict = {"code": EXIT_OK, "saved": []}
    bar = None
    # Pictures whose animation waits for their decoded replay (a model that previews by decoding), and whether
    # the job has ended: the command is done when both are over.
    lock = threading.Lock()
    waiting: dict = {}
    ended = threading.Event()

    def animate(ready) -> None:
        from .lab_cli import write_animation

        try:
            print(write_animation(ready, args.animation), flush=True)
        except DarkroomError as exc:
            outcome["code"], outcome["error"] = EXIT_FAILED, exc.message

    def animate_waiting() -> None:
        """Animate the pictures still waiting with their quick frames: no decoded replay will come in time."""
        with lock:
            left = list(waiting.values())
            waiting.clear()
        for ready in left:
            animate(ready)

    def finish_if_over() -> None:
        with lock:
            over = ended.is_set() and not waiting
        if over:
            done.set()

    def on_event(event) -> None:
        nonlocal bar
        if isinstance(event, Started) and not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=request.steps * request.batch_count, unit="step", file=sys.stderr, leave=False)
        elif isinstance(event, Progress) and bar is not None:
            bar.n = event.image_index * event.total + event.step
            bar.set_postfix_str(f"image {event.image_index + 1}/{event.image_count}", refresh=False)
            bar.refresh()
        elif isinstance(event, ImageReady):
            try:
                path = gallery.save(event).path if gallery else save_to_folder(event, args.out)
                outcome["saved"].append(path)
                print(path, flush=True)
            except DarkroomError as exc:
                outcome["code"], outcome["error"] = EXIT_FAILED, exc.message
                engine.cancel(event.job_id)
            else:
                if getattr(args, "animation", None) is not None:
                    if event.replay_pending:
                        with lock:
                            waiting[(event.job_id, event.image_index)] = event
                    else:
                        animate(event)
        elif isinstance(event, ReplayDecoded):
            with lock:
                ready = waiting.pop((event.job_id, event.image_index), None)
            if ready is not None:
                animate(dataclasses.replace(ready, replay=event.frames, replay_decoded=True) if event.frames else ready)
            finish_if_over()
        elif isinstance(event, (Finished, Failed, Cancelled)):
            if isinstance(event, Failed):
                outcome["code"], outcome["error"] = EXIT_FAILED, event.message
                outcome["details"] = event.details
            elif isinstance(event, Cancelled) and outcome["code"] == EXIT_OK:
                outcome["code"] = EXIT_CANCELLED
            if not isinstance(event, Finished):
                animate_waiting()  # the command ends now
            ended.set()
            finish_if_over()

    memory_mode = args.memory or settings.memory_mode
    engine = Engine(on_event, EngineOptions(device=args.device, preview=PreviewOptions(mode="off"),
                                            memory_mode=memory_mode))
    engine.submit(request)
    try:
        deadline = None
        while not done.wait(0.2):
            if ended.is_set():
                deadline = deadline or time.monotonic() + DECODED_REPLAY_WAIT_S
                if time.monotonic() > deadline:  # the decoded replays never came
                    animate_waiting()
                    break
    except KeyboardInterrupt:
        engine.cancel_all()
        done.wait(5)
        outcome["code"] = EXIT_CANCELLED
        outcome.setdefault("error", "Cancelled.")
    finally:
        engine.shutdown()
        if gallery is not None:
            gallery.close()
        if bar is not None:
            bar.close()
    if outcome["code"] != EXIT_OK:
        if args.debug and outcome.get("details"):
            print(outcome["details"], file=sys.stderr)
        raise CliError(outcome.get("error", "Generation did not finish."), outcome["code"])
    return EXIT_OK


def save_to_folder(ready, folder: Path) -> Path:
    """Write one image, with the gallery's metadata, into a folder of the user's choosing (not indexed)."""
    from datetime import datetime

    from .gallery import Gallery, store
    from .gallery.gallery import stored_recipe

    now = datetime.now().astimezone()
    data = Gallery.encode(stored_recipe(ready, folder), now)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return store.write_new_file(folder, lambda: store.image_file_name(now, ready.request.seed), data)
    except OSError as exc:
        raise store.disk_error(exc, folder) from None


def _error(message: str) -> None:
    """One line on stderr, whatever the message holds (line breaks, undecodable text from the command line)."""
    text = " ".join(str(message).split("\n")).encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        print(f"darkroom: error: {text}", file=sys.stderr)
    except UnicodeEncodeError:  # a terminal in a narrow encoding
        print(f"darkroom: error: {text}".encode("ascii", "backslashreplace").decode("ascii"), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except DarkroomError as exc:
        _error(exc.message)
        if args.debug and exc.details:
            print(exc.details, file=sys.stderr)
        return EXIT_USAGE if exc.kind == ErrorKind.VALIDATION else EXIT_FAILED
    except KeyboardInterrupt:
        print("darkroom: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - people get one line; --debug shows the traceback
        if args.debug:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_FAILED
