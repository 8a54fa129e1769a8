"""Entry points: ``darkroom`` (console) and ``darkroom-app`` (GUI).

``darkroom`` with no arguments, or ``darkroom app``, opens the window. Every other subcommand
(``darkroom generate …``, ``darkroom models``, …) goes to :func:`engine.cli.main` without importing Qt, so
headless use never pays for, or depends on, a GUI toolkit.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

#: Taken as early as possible so the window can report how long launching took.
LAUNCH_T0 = time.perf_counter()

_APP_WORDS = ("app", "gui")


def _wants_window(argv: Sequence[str]) -> bool:
    return not argv or argv[0] in _APP_WORDS


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: open the window, or hand the subcommand to the headless CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    if _wants_window(args):
        return main_gui(args[1:] if args else [])
    from engine.cli import main as cli_main

    result = cli_main(args)
    return int(result or 0)


def main_gui(argv: Sequence[str] | None = None) -> int:
    """GUI entry point: open the window and run until it closes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _APP_WORDS:
        args = args[1:]
    if args and args[0] in ("-h", "--help"):
        print("usage: darkroom [app]\n\nOpens the Darkroom window. Run `darkroom --help` for the other commands.")
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
