"""The :class:`Gallery`: saving finished images into the gallery folder and finding them again.

Thread safety: every method may be called from any thread. ``save`` is called on the GUI's saver thread and
directly by the command line; the index gives each thread its own SQLite connection.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from .. import paths
from ..errors import DarkroomError, DiskError, ErrorKind
from ..events import ImageReady
from . import store, thumbnails
from .index import GalleryIndex, GridEntry, ImageRecord, IndexEntry
from .metadata import (
    ImageParameters,
    MetadataError,
    darkroom_text_chunks,
    parameters_from_text,
    read_parameters,
    read_png_text,
)

log = logging.getLogger(__name__)

INDEX_FILE_NAME = "gallery.sqlite3"
#: Rows written per transaction while rescanning.
_BATCH = 256


@dataclass(frozen=True)
class SavedImage:
    """A saved image: its file, and its index row (None when the index could not be written; the next rescan
    picks the file up)."""

    path: Path
    record: ImageRecord | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RescanResult:
    added: int = 0
    updated: int = 0
    removed: int = 0
    total: int = 0
    skipped: int = 0  # files that are not readable PNG images
    temp_removed: int = 0
    cancelled: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass(frozen=True)
class DeleteResult:
    deleted: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()  # (image id, message for people)


#: A picture's replay (noise → image animation), saved beside it when the person asks: ``<picture>.replay.webp``.
REPLAY_SUFFIX = ".replay.webp"


def move_to_trash(path: Path) -> None:
    """Move a file to the system trash (tests replace this)."""
    from send2trash import send2trash

    send2trash(os.fspath(path))


def default_index_path() -> Path:
    return paths.data_dir() / INDEX_FILE_NAME


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def entry_for(relpath: str, st: os.stat_result, png_width: int, png_height: int,
              params: ImageParameters | None, created: float | None) -> IndexEntry:
    f = dict(params.fields) if params else {}
    return IndexEntry(
        relpath=relpath,
        created=created if created is not None else st.st_mtime,
        file_size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        width=png_width,
        height=png_height,
        prompt=f.get("prompt", ""),
        negative_prompt=f.get("negative_prompt", ""),
        seed=f.get("seed"),
        steps=f.get("steps"),
        cfg=f.get("cfg"),
        scheduler=f.get("sampler") or f.get("scheduler", ""),  # the index column keeps its first name
        model=(params.model_name or f.get("model", "")) if params else "",
        model_hash=params.model_hash if params else "",
        source=params.source if params else "",
        params=f,
    )


class Gallery:
    """The gallery folder and its index.

    ``root``: the gallery folder the user chose (default: ``engine.paths.default_gallery_dir()``).
    ``index_path``: the SQLite index (default: ``<data dir>/gallery.sqlite3``).

    ``autosave`` is the "save every image" switch: the app and ``darkroom generate`` call :meth:`save` only
    while it is on. Opening never scans the folder; call :meth:`rescan` (the GUI does it in the background, the
    command line before listing). :attr:`needs_full_scan` is True when the index was missing or rebuilt.
    """

    def __init__(self, root: Path | str | None = None, index_path: Path | str | None = None):
        self._default_root = root is None
        self.root = Path(root).expanduser() if root is not None else paths.default_gallery_dir()
        self.index_path = Path(index_path) if index_path is not None else default_index_path()
        self.autosave = True
        self.thumbnail_root = thumbnails.cache_root()
        self._index = GalleryIndex(self.index_path, self.root)
        self._scan_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------------------
    @property
    def index(self) -> GalleryIndex:
        return self._index

    @property
    def needs_full_scan(self) -> bool:
        return self._index.needs_full_scan

    def close(self) -> None:
        self._index.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ensure_root(self) -> Path:
        root = self.root
        if root.is_dir():
            return root
        if root.exists():
            raise DiskError(f"The gallery folder {root} is not a folder. Choose another gallery folder.")
        if not self._default_root and not root.parent.is_dir():
            raise self._missing_root_error()
        try:
            root.mkdir(parents=self._default_root, exist_ok=True)
        except OSError as exc:
            raise store.disk_error(exc, root) from None
        return root

    def _missing_root_error(self) -> DiskError:
        return DiskError(
            f"The gallery folder {self.root} does not exist (is a drive disconnected?). Reconnect it or choose "
            "another gallery folder."
        )

    def relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- saving -----------------------------------------------------------------------------------------------
    @staticmethod
    def text_chunks(ready: ImageReady, created: datetime | None = None) -> dict[str, str]:
        """Darkroom's metadata for a finished image: A1111 ``parameters`` and the ``darkroom`` JSON."""
        created = created or datetime.now().astimezone()
        extra = {
            "image_index": ready.image_index,
            "image_count": ready.image_count,
            "device": ready.device,
            "dtype": ready.dtype,
            "seconds": round(float(ready.seconds), 3),
        }
        return darkroom_text_chunks(
            ready.request, model_name=ready.model_name, model_hash=ready.model_hash, created=created, extra=extra
        )

    @staticmethod
    def encode(ready: ImageReady, created: datetime | None = None) -> bytes:
        """PNG bytes of a finished image with Darkroom's metadata."""
        return store.encode_png(ready.image, Gallery.text_chunks(ready, created))

    def save(self, ready: ImageReady) -> SavedImage:
        """Save a finished image into today's folder and index it. Raises :class:`DiskError` (plain words)
        when the folder is missing, read-only or full; nothing half-written is ever left behind."""
        now = datetime.now().astimezone()
        root = self._ensure_root()
        ready = stored_recipe(ready, root)
        chunks = self.text_chunks(ready, now)
        data = store.encode_png(ready.image, chunks)
        folder = root / store.day_folder_name(now)
        seed = ready.request.seed
        try:
            folder.mkdir(exist_ok=True)
            path = store.write_new_file(folder, lambda: store.image_file_name(now, seed), data)
        except OSError as exc:
            raise store.disk_error(exc, root) from None
        record, warnings = self._index_saved(path, ready, chunks, now.timestamp())
        return SavedImage(path, record, warnings)

    def _index_saved(self, path: Path, ready: ImageReady, chunks: dict[str, str],
                     created: float) -> tuple[ImageRecord | None, tuple[str, ...]]:
        """Index a file just written, from the very text written into it, so the row is the one a rescan of the
        file would make."""
        try:
            st = path.stat()
            params = parameters_from_text(chunks)
            height, width = int(ready.image.shape[0]), int(ready.image.shape[1])
            entry = entry_for(self.relpath(path), st, width, height, params, created)
            return self._index.upsert(entry), ()
        except (sqlite3.Error, OSError, MetadataError) as exc:
            log.warning("saved %s but could not index it: %s", path, exc)
            return None, ("The image was saved but the gallery index could not be updated; it will appear after a rescan.",)

    def save_as(self, ready: ImageReady, path: Path | str) -> Path:
        """Save a finished image to a path the user chose (replacing a file there). Raises :class:`DiskError`."""
        path = Path(path)
        chunks = self.text_chunks(stored_recipe(ready, self.root))
        try:
            store.write_file_replacing(path, store.encode_png(ready.image, chunks))
        except OSError as exc:
            raise store.disk_error(exc, path.parent) from None
        if _inside(path, self.root):
            try:
                self._index_saved(path, ready, chunks, time.time())
            except Exception:  # noqa: BLE001 - indexing is a cache; the file is saved
                pass
        return path

    # -- reading ----------------------------------------------------------------------------------------------
    def records(
        self,
        text: str = "",
        *,
        favourites_only: bool = False,
        newest_first: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ImageRecord]:
        """Indexed images, newest first by default; ``text`` searches prompts and negative prompts."""
        return self._index.query(
            text, favourites_only=favourites_only, newest_first=newest_first, limit=limit, offset=offset
        )

    def search(self, text: str, **kwargs) -> list[ImageRecord]:
        return self.records(text, **kwargs)

    def entries(self, text: str = "", *, favourites_only: bool = False, newest_first: bool = True) -> list[GridEntry]:
        """Like :meth:`records`, but only what a thumbnail grid needs per row (fast for tens of thousands)."""
        return self._index.entries(text, favourites_only=favourites_only, newest_first=newest_first)

    def count(self, text: str = "", *, favourites_only: bool = False) -> int:
        return self._index.count(text, favourites_only=favourites_only)

    def get(self, image_id: int) -> ImageRecord | None:
        return self._index.get(image_id)

    def record_for_path(self, path: Path | str) -> ImageRecord | None:
        path = Path(path)
        if not _inside(path, self.root):
            return None
        return self._index.get_by_path(path.resolve().relative_to(self.root.resolve()).as_posix())

    def parameters(self, record: ImageRecord | int) -> ImageParameters:
        """The parameters in an image's file (the truth). Raises :class:`MetadataError`."""
        if isinstance(record, int):
            found = self.get(record)
            if found is None:
                raise MetadataError("unreadable", "This image is no longer in the gallery.")
            record = found
        return read_parameters(record.path)

    def path_of(self, item: ImageRecord | GridEntry) -> Path:
        return self.root / item.relpath

    def thumbnail_key(self, item: ImageRecord | GridEntry) -> str:
        """The thumbnail cache key of an image (path, size and modification time)."""
        return thumbnails.cache_key(os.path.join(str(self.root), item.relpath), item.file_size, item.mtime_ns)

    # -- changing -----------------------------------------------------------------------------------------------
    def set_favourite(self, image_ids: int | Iterable[int], favourite: bool = True) -> None:
        ids = [image_ids] if isinstance(image_ids, int) else list(image_ids)
        self._index.set_favourite(ids, favourite)

    def delete(self, image_ids: int | Iterable[int]) -> DeleteResult:
        """Move images to the system trash and forget them. Files outside the gallery folder are never touched."""
        ids = [image_ids] if isinstance(image_ids, int) else list(image_ids)
        deleted: list[int] = []
        failed: list[tuple[int, str]] = []
        for image_id in ids:
            record = self._index.get(image_id)
            if record is None:
                continue
            path = record.path
            if not _inside(path, self.root):
                failed.append((image_id, f"{record.relpath} is outside the gallery folder; it was left alone."))
                continue
            if path.exists() or path.is_symlink():
                try:
                    move_to_trash(path)
                except Exception as exc:  # noqa: BLE001 - send2trash raises OSError or its own TrashPermissionError
                    failed.append((image_id, f"Could not move {path.name} to the trash: {exc}"))
                    continue
            replay = path.with_suffix(REPLAY_SUFFIX)
            if replay.is_file():  # the picture's replay, kept beside it on request, goes with it
                try:
                    move_to_trash(replay)
                except Exception as exc:  # noqa: BLE001 - the picture is in the trash; the replay is only extra
                    log.warning("could not move %s to the trash: %s", replay, exc)
            deleted.append(image_id)
            thumbnails.forget(self.thumbnail_root, self.thumbnail_key(record))
        if deleted:
            self._index.remove_ids(deleted)
        return DeleteResult(tuple(deleted), tuple(failed))

    def export(self, image_ids: Iterable[int], folder: Path | str) -> list[Path]:
        """Copy images into ``folder`` (made if its parent exists), keeping names and never replacing a file.
        Raises :class:`DiskError`, or :class:`DarkroomError` (validation) for a folder inside the gallery: copies
        there would be indexed and show up in the gallery twice."""
        folder = Path(folder).expanduser()
        if _inside(folder, self.root):
            raise DarkroomError(
                f"Cannot export into {folder}: it is inside the gallery folder {self.root}, so the copies would show "
                "up in the gallery twice. Choose a folder outside the gallery.",
                kind=ErrorKind.VALIDATION,
            )
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise store.disk_error(exc, folder, "export the images") from None
        out: list[Path] = []
        for image_id in image_ids:
            record = self._index.get(int(image_id))
            if record is None or not _inside(record.path, self.root):
                continue
            try:
                with store.open_regular(record.path) as fp:
                    data = fp.read()
            except OSError as exc:
                raise store.disk_error(exc, record.path.parent, "read the image") from None
            name = Path(record.relpath).name
            stem, suffix = os.path.splitext(name)
            counter = iter(range(1, 1_000_000))

            def make_name() -> str:
                n = next(counter)
                return name if n == 1 else f"{stem} ({n}){suffix}"

            try:
                out.append(store.write_new_file(folder, make_name, data, attempts=1000))
            except OSError as exc:
                raise store.disk_error(exc, folder, "export the images") from None
        return out

    # -- scanning -----------------------------------------------------------------------------------------------
    def _walk(self, root: Path) -> tuple[dict[str, os.stat_result], int]:
        found: dict[str, os.stat_result] = {}
        temp_removed = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            folder = Path(dirpath)
            temp = [n for n in filenames if store.is_temp_name(n)]
            if temp:
                temp_removed += store.remove_stale_temp_files(folder, temp)
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(".png"):
                    continue
                path = folder / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):  # a FIFO or device named *.png must never be opened
                    found[path.relative_to(root).as_posix()] = st
        return found, temp_removed

    def rescan(
        self,
        *,
        force: bool = False,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> RescanResult:
        """Bring the index in line with the folder: add new or changed PNG files, forget deleted ones, remove
        temporary files of crashed writers. ``force`` re-reads every file.

        A default gallery folder that was never made is an empty gallery (the first save makes it). A missing
        folder that the user chose, or that held indexed images, raises :class:`DiskError` (a drive may be
        disconnected) and the index is left as it is."""
        with self._scan_lock:
            known = self._index.file_stats()  # before walking: rows added meanwhile are never dropped
            if not self.root.is_dir():
                if self.root.exists():
                    raise DiskError(f"The gallery folder {self.root} is not a folder. Choose another gallery folder.")
                # Rows checked against this folder by an earlier scan mean it existed: it has gone missing.
                existed = bool(known) and not self._index.needs_full_scan
                if existed or not self._default_root:
                    raise self._missing_root_error()
                removed = self._index.remove_paths(known)  # rows of a folder the index served before
                self._index.needs_full_scan = False
                return RescanResult(removed=removed)
            try:
                on_disk, temp_removed = self._walk(self.root)
            except OSError as exc:
                raise store.disk_error(exc, self.root, "read the gallery folder") from None
            todo = [
                (rel, st) for rel, st in on_disk.items()
                if force or known.get(rel) != (st.st_size, st.st_mtime_ns)
            ]
            todo.sort(key=lambda item: item[0])
            added = updated = skipped = 0
            batch: list[IndexEntry] = []
            for n, (rel, st) in enumerate(todo):
                if cancel is not None and cancel.is_set():
                    self._index.upsert_many(batch)
                    return RescanResult(added, updated, 0, len(on_disk), skipped, temp_removed, cancelled=True)
                entry = self._read_entry(rel, st)
                if entry is None:
                    skipped += 1
                    continue
                batch.append(entry)
                if rel in known:
                    updated += 1
                else:
                    added += 1
                if len(batch) >= _BATCH:
                    self._index.upsert_many(batch)
                    batch = []
                    if progress is not None:
                        progress(n + 1, len(todo))
            self._index.upsert_many(batch)
            gone = [rel for rel in known if rel not in on_disk]
            removed = self._index.remove_paths(gone)
            self._index.needs_full_scan = False
            return RescanResult(added, updated, removed, len(on_disk) - skipped, skipped, temp_removed)

    def _read_entry(self, rel: str, st: os.stat_result) -> IndexEntry | None:
        path = self.root / rel
        try:
            png = read_png_text(path)  # opens regular files only (a FIFO may replace the file after the walk)
        except MetadataError:
            return None  # not a PNG we can show
        try:
            params: ImageParameters | None = parameters_from_text(png.text)
        except MetadataError:
            params = None
        created = store.time_from_name(Path(rel).name)
        if created is None and params is not None and params.created is not None:
            created = params.created
        return entry_for(rel, st, png.width, png.height, params, created)

    def reindex(self, **kwargs) -> RescanResult:
        """Rebuild the index from the files (keeping favourites of files that are still there)."""
        if not self.root.is_dir():
            return self.rescan(**kwargs)  # an empty gallery, or an error: either way the index must stay
        with self._scan_lock:
            favourites = self._index.favourite_paths()
            self._index.clear()
        result = self.rescan(force=True, **kwargs)
        self._index.mark_favourite_paths(favourites)
        return result


__all__ = [
    "Gallery", "SavedImage", "RescanResult", "DeleteResult", "ImageRecord", "GridEntry", "move_to_trash",
]


def stored_recipe(ready: ImageReady, root: Path) -> ImageReady:
    """The finished image with the recipe its metadata records (:func:`engine.images.recipe_to_store`)."""
    from ..images import recipe_to_store

    return ready if not ready.request.parts else dataclasses.replace(ready, request=recipe_to_store(ready.request, root))
