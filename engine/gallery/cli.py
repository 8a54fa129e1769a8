"""``darkroom gallery …``: the gallery for scripts.

    darkroom gallery list [--limit N] [--favourites] [--oldest] [--json]
    darkroom gallery search TEXT [--limit N] [--favourites] [--oldest] [--json]
    darkroom gallery reindex
    darkroom gallery export FOLDER [--search TEXT] [--favourites] [--id ID ...] [--limit N]
    darkroom gallery show FILE

``list``, ``search`` and ``export`` first bring the index up to date with the folder (a quick scan: only new or
changed files are read). ``show`` prints, as JSON, the parameters it reads from any PNG (Darkroom's, A1111's,
Fooocus', ComfyUI's, InvokeAI's). Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from ..errors import DarkroomError

#: Exit status for errors reported in words (argparse uses 2 for bad usage).
EXIT_ERROR = 1


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``gallery`` command to an argparse sub-parsers object. Its handler is ``args.handler(args) -> int``;
    it reports every error itself and returns the exit status."""
    parser = subparsers.add_parser(
        "gallery",
        help="list, search, reindex or export the gallery; show an image's parameters",
        description="Work with the gallery: the folder where Darkroom saves every image, and its index.",
    )
    parser.add_argument("--gallery", metavar="FOLDER", type=Path, default=None,
                        help="the gallery folder (default: the one chosen in the app)")
    parser.add_argument("--index", metavar="FILE", type=Path, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="gallery_command", metavar="COMMAND")
    sub.required = True

    def listing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--limit", type=int, default=0, metavar="N", help="show at most N images (default: all)")
        p.add_argument("--favourites", action="store_true", help="only favourites")
        p.add_argument("--oldest", action="store_true", help="oldest first (default: newest first)")
        p.add_argument("--json", action="store_true", help="print a JSON array instead of lines")

    listing(sub.add_parser("list", help="list images, newest first"))
    p = sub.add_parser("search", help="full-text search in prompts and negative prompts")
    p.add_argument("text", metavar="TEXT")
    listing(p)
    sub.add_parser("reindex", help="rebuild the index from the files")
    p = sub.add_parser("export", help="copy images into a folder")
    p.add_argument("folder", metavar="FOLDER", type=Path)
    p.add_argument("--search", metavar="TEXT", default="", help="only images matching TEXT")
    p.add_argument("--favourites", action="store_true", help="only favourites")
    p.add_argument("--id", dest="ids", type=int, action="append", metavar="ID", help="only this image (repeatable)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N images, newest first")
    p = sub.add_parser("show", help="print the parameters stored in any PNG, as JSON")
    p.add_argument("file", metavar="FILE", type=Path)
    parser.set_defaults(handler=run)
    return parser


def _fail(message: str) -> int:
    print(f"darkroom: error: {message}".replace("\n", " "), file=sys.stderr)
    return EXIT_ERROR


def _open(args: argparse.Namespace):
    """The gallery ``--gallery`` names, else the folder chosen in the app's settings (where the app and
    ``darkroom generate`` save), else the default folder."""
    from ..settings import load
    from .gallery import Gallery

    root = args.gallery if args.gallery is not None else (load()[0].gallery_dir or None)
    return Gallery(root, args.index)


def _line(record) -> str:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
    prompt = " ".join(record.prompt.split())
    if len(prompt) > 80:
        prompt = prompt[:79] + "…"
    star = "*" if record.favourite else "-"
    seed = "" if record.seed is None else str(record.seed)
    return f"{record.id}\t{created}\t{star}\t{seed}\t{record.path}\t{prompt}"


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except DarkroomError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the command line reports in one line, never a traceback
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}")


def _run(args: argparse.Namespace) -> int:
    command = args.gallery_command
    if command == "show":
        from .metadata import read_parameters

        params = read_parameters(args.file)
        print(json.dumps(params.to_json(), indent=2, ensure_ascii=False))
        return 0

    gallery = _open(args)
    try:
        if command == "reindex":
            result = gallery.reindex()
            print(f"Indexed {result.total} images in {gallery.root}"
                  + (f" ({result.skipped} unreadable files skipped)" if result.skipped else "") + ".")
            return 0
        gallery.rescan()
        if command in ("list", "search"):
            text = args.text if command == "search" else ""
            records = gallery.records(text, favourites_only=args.favourites, newest_first=not args.oldest,
                                      limit=args.limit or None)
            if args.json:
                print(json.dumps([r.to_json() for r in records], indent=2, ensure_ascii=False))
            else:
                for r in records:
                    print(_line(r))
            return 0
        if command == "export":
            if args.ids:
                ids = list(dict.fromkeys(args.ids))
                missing = [i for i in ids if gallery.get(i) is None]
                if missing:
                    return _fail(f"no image with id {missing[0]} in the gallery.")
            else:
                ids = [r.id for r in gallery.records(args.search, favourites_only=args.favourites,
                                                     limit=args.limit or None)]
            written = gallery.export(ids, args.folder)
            print(f"Exported {len(written)} images to {args.folder}.")
            return 0
        return _fail(f"unknown command {command!r}.")
    finally:
        gallery.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m engine.gallery.cli gallery list``."""
    parser = argparse.ArgumentParser(prog="darkroom")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
