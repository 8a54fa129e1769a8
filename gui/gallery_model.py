"""The gallery grid's model, thumbnail loader and item delegate.

- :class:`ThumbnailLoader` makes thumbnails on worker threads (never on the UI thread): cache hits are small JPEG
  files from ``engine.paths.cache_dir()``; misses decode the PNG once and write the cache. Requests are served
  newest first and requests for rows that scrolled away are dropped, so scrolling through thousands of images
  only ever works on what is (nearly) on screen.
- :class:`GalleryModel` holds the rows (light index entries) and a byte-bounded LRU of decoded thumbnails, so
  memory stays flat however far one scrolls.
- :class:`ThumbnailDelegate` paints a cell: the thumbnail kept in proportion, a star for favourites.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QObject, QRect, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from engine.gallery import Gallery, GridEntry, ImageRecord, thumbnails

EntryRole = Qt.ItemDataRole.UserRole + 1
KeyRole = Qt.ItemDataRole.UserRole + 2

#: Decoded thumbnails kept in memory, in bytes.
DEFAULT_CACHE_BYTES = 96 * 1024 * 1024


def qimage_from_thumbnail(thumb: thumbnails.Thumbnail) -> QImage:
    image = QImage(thumb.rgb, thumb.width, thumb.height, 3 * thumb.width, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: the bytes object goes away


class ThumbnailLoader(QObject):
    """Makes thumbnails on ``threads`` worker threads; ``loaded(key, image)`` arrives on the UI thread
    (a null image when the file cannot be read). Call :meth:`shutdown` before dropping it."""

    loaded = Signal(str, QImage)

    def __init__(self, cache_root: Path, threads: int = 2, size: int = thumbnails.THUMBNAIL_SIZE, parent=None):
        super().__init__(parent)
        self._cache_root = Path(cache_root)
        self._size = size
        self._max_threads = max(1, threads)
        self._cond = threading.Condition()
        self._pending: "OrderedDict[str, str]" = OrderedDict()  # key -> path; last = most recent
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._stopping = False

    def request(self, key: str, path: str | Path) -> None:
        with self._cond:
            if self._stopping:
                return
            if key in self._pending:
                self._pending.move_to_end(key)
            else:
                self._pending[key] = str(path)
            if len(self._threads) < self._max_threads and len(self._threads) <= self._busy + len(self._pending) - 1:
                t = threading.Thread(target=self._work, name=f"darkroom-thumbnails-{len(self._threads) + 1}", daemon=True)
                self._threads.append(t)
                t.start()
            self._cond.notify()

    def retain(self, keys: Iterable[str]) -> None:
        """Forget pending requests whose key is not in ``keys`` (rows that scrolled out of view)."""
        keep = set(keys)
        with self._cond:
            for key in [k for k in self._pending if k not in keep]:
                del self._pending[key]

    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for t in threads:
            t.join()
        with self._cond:
            self._threads.clear()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                key, path = self._pending.popitem(last=True)
                self._busy += 1
            try:
                thumb = thumbnails.get_thumbnail(self._cache_root, key, path, self._size)
                image = qimage_from_thumbnail(thumb) if thumb is not None else QImage()
                if not self._stopping:
                    self.loaded.emit(key, image)
            except Exception:  # noqa: BLE001 - one bad file must not stop the loader
                pass
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


class GalleryModel(QAbstractListModel):
    """Rows of :class:`GridEntry` (id, file, favourite); the decoration of a row is its thumbnail (None until it
    has loaded). Full records are read from the index on demand (:meth:`record`), for the few rows that need
    them. Thumbnail keys are computed only for rows that are looked at."""

    def __init__(self, gallery: Gallery, loader: ThumbnailLoader, cache_bytes: int = DEFAULT_CACHE_BYTES, parent=None):
        super().__init__(parent)
        self._gallery = gallery
        self._loader = loader
        self._entries: list[GridEntry] = []
        self._keys: list[str | None] = []
        self._row_of_key: dict[str, int] = {}
        self._row_of_id: dict[int, int] | None = None
        self._records: "OrderedDict[int, ImageRecord]" = OrderedDict()
        self._cache: "OrderedDict[str, QImage]" = OrderedDict()
        self._cache_bytes = 0
        self._max_cache_bytes = cache_bytes
        self._failed: set[str] = set()
        loader.loaded.connect(self._on_loaded)

    # -- rows ---------------------------------------------------------------------------------------------
    def _rows_changed(self) -> None:
        self._keys = [None] * len(self._entries)
        self._row_of_key = {}
        self._row_of_id = None

    def set_entries(self, entries: list[GridEntry]) -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self._records.clear()
        self._rows_changed()
        self.endResetModel()

    def insert_entry(self, row: int, entry: GridEntry) -> None:
        row = max(0, min(row, len(self._entries)))
        self.beginInsertRows(QModelIndex(), row, row)
        self._entries.insert(row, entry)
        self._rows_changed()
        self.endInsertRows()

    def remove_ids(self, ids: Iterable[int]) -> None:
        doomed = set(ids)
        for row in range(len(self._entries) - 1, -1, -1):
            if self._entries[row].id in doomed:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._entries[row]
                self._keys = self._keys[:row] + self._keys[row + 1:]
                self._row_of_key = {}
                self._row_of_id = None
                self.endRemoveRows()
        for image_id in doomed:
            self._records.pop(image_id, None)
        self._rows_changed()

    def set_favourite_flags(self, ids: Iterable[int], favourite: bool) -> None:
        for image_id in ids:
            row = self.row_of_id(image_id)
            if row >= 0:
                self._entries[row] = self._entries[row]._replace(favourite=int(favourite))
                self._records.pop(image_id, None)
                ix = self.index(row)
                self.dataChanged.emit(ix, ix)

    def forget_record(self, image_id: int) -> None:
        self._records.pop(image_id, None)

    def entry(self, row: int) -> GridEntry | None:
        return self._entries[row] if 0 <= row < len(self._entries) else None

    def entries(self) -> list[GridEntry]:
        return list(self._entries)

    def record(self, row: int) -> ImageRecord | None:
        """The full index record of a row (read on demand, a few kept)."""
        entry = self.entry(row)
        if entry is None:
            return None
        record = self._records.get(entry.id)
        if record is None:
            record = self._gallery.get(entry.id)
            if record is None:
                return None
            self._records[entry.id] = record
            while len(self._records) > 256:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(entry.id)
        return record

    def row_of_id(self, image_id: int) -> int:
        if self._row_of_id is None:
            self._row_of_id = {e.id: i for i, e in enumerate(self._entries)}
        return self._row_of_id.get(image_id, -1)

    def key(self, row: int) -> str:
        key = self._keys[row]
        if key is None:
            key = self._gallery.thumbnail_key(self._entries[row])
            self._keys[row] = key
            self._row_of_key[key] = row
        return key

    # -- Qt model -----------------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(row)
        if role == EntryRole:
            return self._entries[row]
        if role == KeyRole:
            return self.key(row)
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            record = self.record(row)
            if record is None:
                return None
            prompt = record.prompt if len(record.prompt) < 300 else record.prompt[:299] + "…"
            text = prompt or record.path.name
            if role == Qt.ItemDataRole.AccessibleTextRole and record.favourite:
                text += " (favourite)"
            return text
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes) -> QMimeData:
        mime = QMimeData()
        urls = [QUrl.fromLocalFile(str(self._gallery.path_of(self._entries[i.row()]))) for i in indexes if i.isValid()]
        mime.setUrls(urls)
        return mime

    # -- thumbnails ---------------------------------------------------------------------------------------
    def thumbnail(self, row: int) -> QImage | None:
        key = self.key(row)
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
            return image
        if key not in self._failed:
            self._loader.request(key, self._gallery.path_of(self._entries[row]))
        return None

    def has_thumbnail(self, row: int) -> bool:
        key = self.key(row)
        return key in self._cache or key in self._failed

    def request_rows(self, first: int, last: int) -> None:
        """Ask for the thumbnails of rows ``first..last`` (and forget requests for any other rows)."""
        first, last = max(0, first), min(len(self._entries) - 1, last)
        rows = range(first, last + 1) if last >= first else range(0)
        self._loader.retain([self.key(r) for r in rows])
        for row in reversed(rows):  # served last-in first-out: the top of the screen comes first
            key = self.key(row)
            if key not in self._cache and key not in self._failed:
                self._loader.request(key, self._gallery.path_of(self._entries[row]))

    def cache_bytes(self) -> int:
        return self._cache_bytes

    def cached_count(self) -> int:
        return len(self._cache)

    def _on_loaded(self, key: str, image: QImage) -> None:
        if image.isNull():
            self._failed.add(key)
        elif key not in self._cache:
            self._cache[key] = image
            self._cache_bytes += image.sizeInBytes()
            while self._cache_bytes > self._max_cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.sizeInBytes()
        row = self._row_of_key.get(key)
        if row is not None and row < len(self._entries) and self._keys[row] == key:
            ix = self.index(row)
            self.dataChanged.emit(ix, ix, [Qt.ItemDataRole.DecorationRole])


class ThumbnailDelegate(QStyledItemDelegate):
    def __init__(self, cell: int = 184, parent=None):
        super().__init__(parent)
        self.cell = cell

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(self.cell, self.cell)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        rect: QRect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, palette.highlight())
        inner = rect.adjusted(6, 6, -6, -6)
        image = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(image, QImage) and not image.isNull():
            size = image.size().scaled(inner.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(inner.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(target, image)
        else:
            painter.fillRect(inner, QColor(128, 128, 128, 40))
        entry = index.data(EntryRole)
        if entry is not None and entry.favourite:
            font = QFont(painter.font())
            font.setPointSizeF(max(10.0, font.pointSizeF() * 1.4))
            painter.setFont(font)
            painter.setPen(QPen(QColor(0, 0, 0, 160)))
            star_rect = QRect(inner.right() - 26, inner.top() + 2, 24, 24)
            painter.drawText(star_rect.translated(1, 1), Qt.AlignmentFlag.AlignCenter, "★")
            painter.setPen(QPen(QColor(255, 200, 40)))
            painter.drawText(star_rect, Qt.AlignmentFlag.AlignCenter, "★")
        if option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(QPen(palette.highlight().color().lighter(130), 2))
            painter.drawRect(rect.adjusted(1, 1, -2, -2))
        painter.restore()
