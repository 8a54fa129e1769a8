"""Starting the window: the QApplication, Darkroom's theme and icon, logging, then the event loop; and leaving.

The window is shown before the engine's thread starts importing torch; the status bar reports the warm-up. When
the window closes the process ends at once (:func:`leave`).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

if TYPE_CHECKING:
    from .main_window import MainWindow

log = logging.getLogger("gui")


def _setup_logging() -> None:
    from engine import paths

    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("darkroom: %(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    try:
        log_file = paths.log_file()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=2_000_000, backupCount=2,
                                                            encoding="utf-8")
    except OSError:
        return
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(file_handler)


@dataclass(frozen=True)
class WindowOptions:
    """Darkroom's own options for the window (``darkroom --open-parameters picture.png``)."""

    open_parameters: Path | None = None


OPEN_PARAMETERS = "--open-parameters"


def parse_window_options(argv: Sequence[str]) -> tuple[WindowOptions, list[str]]:
    """Darkroom's window options out of ``argv``; the rest is left for Qt (``-platform``, ``-style``…).
    Raises ValueError when an option lacks its value."""
    rest: list[str] = []
    open_parameters: Path | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == OPEN_PARAMETERS:
            if not args:
                raise ValueError(f"{OPEN_PARAMETERS} needs the path of a PNG image")
            open_parameters = Path(args.pop(0))
        elif arg.startswith(OPEN_PARAMETERS + "="):
            open_parameters = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return WindowOptions(open_parameters=open_parameters), rest


def create_application(argv: Sequence[str] = ()):
    """The QApplication with Darkroom's name, icon and theme (reuses an existing one)."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from . import theme

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        QCoreApplication.setOrganizationName("Darkroom")
        QCoreApplication.setApplicationName("Darkroom")
        QGuiApplication.setApplicationDisplayName("Darkroom")
        QGuiApplication.setDesktopFileName("darkroom")
        app = QApplication([sys.argv[0] if sys.argv else "darkroom", *argv])
    app.setWindowIcon(theme.app_icon())
    theme.apply(app)
    return app


#: Libraries Qt's xcb platform plugin loads on Linux, with the Debian/Ubuntu package that has each.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-shape.so.0": "libxcb-shape0",
}


def missing_xcb_packages() -> list[str]:
    """Packages whose libraries Qt's xcb plugin needs but cannot find (Linux on X11 only; else empty).

    Without them Qt aborts the process with "Could not load the Qt platform plugin xcb", which tells a person
    nothing about what to install, so Darkroom checks first.
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux") or (platform and not platform.startswith("xcb")):
        return []
    if not platform and os.environ.get("WAYLAND_DISPLAY"):
        return []
    import ctypes

    missing = []
    for soname, package in XCB_LIBRARIES.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(package)
    return missing


def qt_binding_problem() -> str:
    """Why the installed Qt binding cannot run Darkroom reliably ("" when it can).

    PySide6 6.12.0 on Python 3.11 releases a reference to ``None`` on every call of a method that returns
    nothing (``widget.update()``, ``label.setText()``…). Python 3.12+ never frees ``None``, but 3.11 does, and
    the app then dies with "Fatal Python error: none_dealloc" after some thousands of calls. Checked by
    behaviour, not by version number, so a fixed build passes.
    """
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        probe.setObjectName("darkroom-probe")
    lost = before - sys.getrefcount(None)
    if lost < 8:
        return ""
    import PySide6

    return (
        f"PySide6 {PySide6.__version__} on Python {sys.version_info.major}.{sys.version_info.minor} loses a "
        "reference to None on every Qt call that returns nothing, which crashes the app after a while. "
        "Install another version (pip install \"PySide6-Essentials>=6.7,<6.12\") or use Python 3.12 or newer."
    )


def run_app(argv: Sequence[str] = (), launch_t0: float | None = None) -> int:
    """Open the window and run until it closes; returns only when the window cannot open."""
    _setup_logging()
    t0 = launch_t0 if launch_t0 is not None else time.perf_counter()
    try:
        options, argv = parse_window_options(argv)
    except ValueError as exc:
        print(f"darkroom: {exc}", file=sys.stderr)
        return 2
    missing = missing_xcb_packages()
    if missing:
        print(
            "darkroom: the window cannot open because Qt is missing system libraries.\n"
            f"On Debian/Ubuntu install them with:\n  sudo apt-get install {' '.join(missing)}\n"
            "(headless commands such as `darkroom generate` work without them)",
            file=sys.stderr,
        )
        return 1
    problem = qt_binding_problem()
    if problem:
        print(f"darkroom: {problem}", file=sys.stderr)
        return 1
    app = create_application(argv)
    from PySide6.QtCore import QTimer

    from engine import settings as settings_mod

    from . import welcome
    from .main_window import MainWindow

    first_run = not settings_mod.settings_path().exists()
    window = MainWindow()
    window.show()
    if options.open_parameters is not None:
        window.open_parameters(options.open_parameters)
    if os.environ.get("DARKROOM_TIMING_LOG"):
        from . import timing_probe

        timing_probe.attach(window)

    def report() -> None:
        if window.first_paint_at is None:
            QTimer.singleShot(10, report)
            return
        if welcome.wanted(first_run):  # over the painted window, so it never delays it
            welcome.greet(window)
        shown_ms = (window.first_paint_at - t0) * 1000
        log.info("window painted %.0f ms after launch (torch imported by then: %s)", shown_ms,
                 window.torch_loaded_at_first_paint)
        if os.environ.get("DARKROOM_REPORT_STARTUP"):
            print(f"darkroom: window painted {shown_ms:.0f} ms after launch; torch imported by then: "
                  f"{window.torch_loaded_at_first_paint}", file=sys.stderr, flush=True)

    QTimer.singleShot(0, report)
    app.aboutToQuit.connect(window.close)  # quitting without closing the window still stops the engine
    _close_on_signals(window)
    _report_unexpected_errors(window)
    code = app.exec()
    window.close()
    leave(code)


def leave(code: int) -> NoReturn:
    """End the process now that the window has closed.

    Everything worth keeping is written by then: the settings, the gallery's files and index (queued saves are
    finished and the index closed), and the log (flushed below). What remains is the engine thread letting go of
    the model, and the interpreter tearing down torch, diffusers and Qt module by module; that keeps nothing and
    took about a second after a generation, so the process ends without it.
    """
    log.info("leaving")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C in the terminal, or SIGTERM (a session ending, ``kill``), closes the window the way Quit does:
    settings saved, queued saves finished. It quits the application, which leaves every event loop, a dialog's
    too (the welcome dialog, About), and closes the window on the way out (``aboutToQuit``). Python runs signal
    handlers only between its own bytecodes, so a timer gives it the chance while Qt's event loop waits."""
    import signal

    from PySide6.QtCore import QCoreApplication, QTimer

    def close(_signum, _frame) -> None:
        log.info("closing on signal %s", _signum)
        QTimer.singleShot(0, QCoreApplication.quit)

    for name in ("SIGINT", "SIGTERM"):
        try:
            signal.signal(getattr(signal, name), close)
        except (AttributeError, ValueError, OSError):  # not on this system, or not the main thread
            pass
    wake = QTimer(window)
    wake.setInterval(200)
    wake.timeout.connect(lambda: None)
    wake.start()


def _report_unexpected_errors(window: MainWindow) -> None:
    """A bug in a slot must not pass silently on stderr: log it and show it in the window's banner."""
    import threading
    import traceback

    from PySide6.QtCore import QThread

    previous = sys.excepthook

    def hook(exc_type, exc, tb) -> None:
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error: %s", details)
        if QThread.currentThread() is window.thread() and not window.isHidden():
            window.banner.error(
                f"Something went wrong inside Darkroom ({exc_type.__name__}: {str(exc)[:200]}). "
                "You can keep working; the details help a bug report.",
                details,
            )
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = hook
    threading.excepthook = lambda args: log.error(
        "unexpected error in thread %s: %s", args.thread.name if args.thread is not None else "?",
        "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)),
    )
