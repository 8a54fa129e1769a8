"""Entry points: ``darkroom`` (console), ``darkroom-app`` (GUI), and the bundle's ``Darkroom`` executable.

``darkroom`` with no arguments, or ``darkroom app``, opens the window; so do ``darkroom --open-parameters
picture.png`` and ``darkroom picture.png`` (the window opens with the picture's parameters: how a desktop's "Open
with" calls it). ``darkroom --self-test`` makes one picture headless and prints a one-line verdict
(:mod:`engine.selftest`). Every other subcommand (``darkroom generate …``, ``darkroom models``, …) goes to
:func:`engine.cli.main` without importing Qt, so headless use never pays for, or depends on, a GUI toolkit.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

#: Taken as early as possible so the window can report how long launching took.
LAUNCH_T0 = time.perf_counter()

_APP_WORDS = ("app", "gui")
SELF_TEST = "--self-test"
OPEN_PARAMETERS = "--open-parameters"  # the window's option, parsed by gui.app


def _wants_window(argv: Sequence[str]) -> bool:
    return not argv or argv[0] in _APP_WORDS or argv[0].split("=", 1)[0] == OPEN_PARAMETERS


def _is_picture(arg: str) -> bool:
    """A PNG given on its own (``darkroom picture.png``, as file managers and desktop entries pass files)."""
    return arg.lower().endswith(".png") and os.path.isfile(arg)


def _child_environment_fix() -> None:
    """In a PyInstaller bundle on Linux, give programs Darkroom starts (a file manager, the log viewer) the
    library path the person had, not the bundle's, so they do not load the bundle's copies of Qt and friends."""
    if getattr(sys, "frozen", False) and sys.platform.startswith("linux"):
        original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            os.environ["LD_LIBRARY_PATH"] = original
        else:
            os.environ.pop("LD_LIBRARY_PATH", None)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: open the window, run the self-test, or hand the subcommand to the headless CLI."""
    _child_environment_fix()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == SELF_TEST:
        from engine.selftest import main as self_test

        return self_test(args[1:])
    if args and _is_picture(args[0]):
        return main_gui(args)
    if _wants_window(args):
        return main_gui(args[1:] if args and args[0] in _APP_WORDS else args)
    from engine.cli import main as cli_main

    result = cli_main(args)
    return int(result or 0)


def main_gui(argv: Sequence[str] | None = None) -> int:
    """GUI entry point: open the window and run until it closes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _APP_WORDS:
        args = args[1:]
    if args and _is_picture(args[0]):
        args = [OPEN_PARAMETERS, *args]
    if args and args[0] in ("-h", "--help"):
        print("usage: darkroom [app] [--open-parameters PICTURE.png]\n\nOpens the Darkroom window, with the "
              "parameters of PICTURE.png in the form when given.\nRun `darkroom --help` for the other commands and "
              "`darkroom --self-test` to check that this installation makes pictures.")
        return 0
    try:
        import PySide6  # noqa: F401
    except ImportError:
        print("darkroom: the window needs PySide6 (pip install \"PySide6-Essentials<6.12\"); headless commands such "
              "as `darkroom generate` work without it.", file=sys.stderr)
        return 1
    from gui.app import run_app

    return run_app(args, launch_t0=LAUNCH_T0)


if __name__ == "__main__":
    sys.exit(main())
