"""The gallery behind the window: which folder, saving finished pictures, "Save as…", and the autosave switch.

:class:`GalleryController` owns the open :class:`engine.gallery.Gallery` (None when it could not be opened: the
window still works, and "Save as…" still writes PNGs with their parameters) and a saver thread, so disk writes
never block the window. Switching folders opens the new gallery at once; the old one is closed on quit, because
a save into it may still be running. Saves never replace a file: the gallery picks a new name.

Threading rules: call it on the GUI thread. The saver thread runs :meth:`Gallery.save` only; its outcome comes
back as the queued signals :attr:`saved` / :attr:`save_failed`.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Qt, Signal

from engine import paths
from engine.errors import DarkroomError
from engine.events import ImageReady
from engine.gallery import Gallery, SavedImage
from engine.gallery.store import disk_error, write_file_replacing
from engine.settings import Settings

from .results import Result

log = logging.getLogger(__name__)

#: How long quitting waits for saves already queued (pictures people made; the usual wait is none at all).
SAVE_DRAIN_S = 30.0


def error_text(exc: BaseException) -> tuple[str, str]:
    """(message for people, details) for an exception raised while saving."""
    if isinstance(exc, DarkroomError):
        return exc.message, exc.details
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}.", details
    return str(exc) or type(exc).__name__, details


def open_gallery(folder: str | Path | None) -> tuple[Gallery | None, str]:
    """The gallery in ``folder`` (None or "": the default folder), or (None, why not)."""
    try:
        return Gallery(folder or None), ""
    except Exception as exc:  # noqa: BLE001 - the window opens without a gallery and says so
        log.exception("could not open the gallery")
        return None, f"{type(exc).__name__}: {exc}"


class _Saver:
    """A daemon thread that saves finished pictures one at a time, in order."""

    def __init__(self, save: Callable[[ImageReady], SavedImage],
                 done: Callable[[ImageReady, SavedImage | None, BaseException | None], None]):
        self._save = save
        self._done = done
        self._queue: "queue.Queue[ImageReady | None]" = queue.Queue()
        self._thread: threading.Thread | None = None

    def put(self, ready: ImageReady) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="darkroom-saver", daemon=True)
            self._thread.start()
        self._queue.put(ready)

    def _run(self) -> None:
        while (ready := self._queue.get()) is not None:
            try:
                saved = self._save(ready)
            except BaseException as exc:  # noqa: BLE001 - reported to the window, which keeps the picture
                log.warning("saving image %s of job %s failed: %s", ready.image_index, ready.job_id, exc)
                self._done(ready, None, exc)
            else:
                self._done(ready, saved, None)

    def close(self, timeout: float) -> bool:
        """Finish the saves already queued (up to ``timeout``), then stop. True when the thread has ended."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class GalleryController(QObject):
    #: the gallery was switched to another folder (the new ``Gallery``); the window replaces the tab
    gallery_changed = Signal(object)
    #: a picture was saved: (``ImageReady``, ``SavedImage``)
    saved = Signal(object, object)
    #: saving a picture failed: (``ImageReady``, message for people, details)
    save_failed = Signal(object, str, str)

    _saver_done = Signal(object, object, object)  # saver thread → GUI thread

    def __init__(self, settings: Settings, gallery: Gallery | None, parent: QObject | None = None):
        super().__init__(parent)
        self._settings = settings
        self._gallery = gallery
        self._retired: list[Gallery] = []
        if gallery is not None:
            gallery.autosave = settings.autosave
        self._saver = _Saver(self._save_one, self._saver_done.emit)
        self._saver_done.connect(self._on_saver_done, Qt.ConnectionType.QueuedConnection)
        self._closed = False

    @property
    def gallery(self) -> Gallery | None:
        return self._gallery

    def folder(self) -> Path:
        return self._gallery.root if self._gallery is not None else Path(self._settings.gallery_dir or
                                                                          paths.default_gallery_dir())

    @property
    def autosave(self) -> bool:
        return self._settings.autosave

    def set_autosave(self, on: bool) -> None:
        """The "Save every image" switch, remembered in the settings."""
        self._settings.autosave = bool(on)
        if self._gallery is not None:
            self._gallery.autosave = bool(on)

    def save(self, result: Result, *, force: bool = False) -> bool:
        """Queue a finished picture for the gallery: always with ``force``, else while autosave is on."""
        if self._gallery is None or self._closed or result.ready is None or not (force or self.autosave):
            return False
        self._saver.put(result.ready)
        return True

    def save_as(self, result: Result, path: Path) -> None:
        """Write ``result`` as a PNG with its parameters at ``path`` (replacing what is there: the person chose
        it); indexed when it lands inside the gallery folder. Raises DarkroomError with a message for people."""
        if result.ready is not None:
            if self._gallery is not None:
                self._gallery.save_as(result.ready, path)
                return
            data = Gallery.encode(result.ready)
        elif result.saved_path:  # an older picture whose full image was let go: its saved file is the same
            try:
                data = Path(result.saved_path).read_bytes()
            except OSError as exc:
                raise disk_error(exc, Path(result.saved_path).parent, "read the saved picture") from None
        else:
            raise DarkroomError("Only a thumbnail of this older picture is kept, and it was not saved to the gallery.")
        try:
            write_file_replacing(path, data)
        except OSError as exc:
            raise disk_error(exc, path.parent) from None

    def set_folder(self, folder: str | Path) -> tuple[bool, str]:
        """Save into, and show, the gallery in ``folder`` from now on. (False, why) when it cannot be opened."""
        gallery, error = open_gallery(Path(folder).expanduser())
        if gallery is None:
            return False, error
        gallery.autosave = self.autosave
        if self._gallery is not None:
            self._retired.append(self._gallery)
        self._gallery = gallery
        self._settings.gallery_dir = str(gallery.root)
        self.gallery_changed.emit(gallery)
        return True, ""

    def shutdown(self) -> None:
        """Finish the saves already queued (they are people's pictures), then close every gallery opened."""
        if self._closed:
            return
        self._closed = True
        if not self._saver.close(SAVE_DRAIN_S):
            log.warning("saves still running after %.0f s; closing anyway", SAVE_DRAIN_S)
        for gallery in [*self._retired, self._gallery]:
            if gallery is not None:
                try:
                    gallery.close()
                except Exception:  # noqa: BLE001 - closing is best effort, the files are written already
                    log.exception("closing the gallery failed")

    @property
    def saving(self) -> bool:
        """True while the saver thread is alive."""
        return self._saver.alive

    # -- internals --------------------------------------------------------------------------------------------
    def _save_one(self, ready: ImageReady) -> SavedImage:
        gallery = self._gallery  # read once: a folder switch applies to the next picture
        if gallery is None:
            raise DarkroomError("The gallery is not available.")
        return gallery.save(ready)

    def _on_saver_done(self, ready: ImageReady, saved: SavedImage | None, exc: BaseException | None) -> None:
        if exc is None and saved is not None:
            self.saved.emit(ready, saved)
        elif exc is not None:
            message, details = error_text(exc)
            self.save_failed.emit(ready, message, details)
