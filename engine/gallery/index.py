"""The gallery index: an SQLite cache of the gallery's files, with full-text search over the prompts.

The files are the truth; this database only makes listing and searching fast and keeps the favourite flags. It is
rebuilt from the files when it is missing, damaged, from a newer Darkroom, or made for another gallery folder
(:attr:`GalleryIndex.needs_full_scan` tells the caller to rescan).

- WAL mode, so readers never wait for the writer and two Darkroom processes can share it (SQLite's own locking
  with a busy timeout serialises their writes).
- ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` brings older databases up to date.
- Paths are stored relative to the gallery folder (POSIX separators).
- One connection per thread (made on first use), all closed by :meth:`GalleryIndex.close`.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from ..errors import DiskError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: How long a write waits for another Darkroom process that holds the index's write lock.
BUSY_TIMEOUT_S = 15.0

_SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        file_size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        favourite INTEGER NOT NULL DEFAULT 0,
        prompt TEXT NOT NULL DEFAULT '',
        negative_prompt TEXT NOT NULL DEFAULT '',
        seed INTEGER,
        steps INTEGER,
        cfg REAL,
        scheduler TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        model_hash TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        params TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS images_by_created ON images (created, id)",
    "CREATE INDEX IF NOT EXISTS images_by_favourite ON images (favourite, created, id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5(
        prompt, negative_prompt, content='images', content_rowid='id', tokenize='unicode61'
    )""",
    """CREATE TRIGGER IF NOT EXISTS images_ai AFTER INSERT ON images BEGIN
        INSERT INTO images_fts (rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_ad AFTER DELETE ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    END""",
    """CREATE TRIGGER IF NOT EXISTS images_au AFTER UPDATE OF prompt, negative_prompt ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
        INSERT INTO images_fts (rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
    END""",
]

#: Schema steps: (version reached, statements). Append new versions; never edit a released one.
MIGRATIONS: list[tuple[int, list[str]]] = [(1, _SCHEMA_V1)]


@dataclass(frozen=True)
class IndexEntry:
    """One image's row, as written by a save or a rescan."""

    relpath: str
    created: float
    file_size: int
    mtime_ns: int
    width: int = 0
    height: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    scheduler: str = ""
    model: str = ""
    model_hash: str = ""
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class ImageRecord(NamedTuple):
    """An indexed image (a light, immutable tuple: listing ten thousand of them must be quick).

    ``path`` is absolute; ``params`` are the request fields read from the file; ``favourite`` is 0 or 1.
    """

    id: int
    relpath: str
    created: float
    file_size: int
    mtime_ns: int
    width: int
    height: int
    favourite: int
    prompt: str
    negative_prompt: str
    seed: int | None
    steps: int | None
    cfg: float | None
    scheduler: str
    model: str
    model_hash: str
    source: str
    params_json: str
    root: str

    @property
    def path(self) -> Path:
        return Path(self.root) / self.relpath

    @property
    def params(self) -> dict[str, Any]:
        try:
            value = json.loads(self.params_json)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.created)),
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
            "favourite": bool(self.favourite),
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "steps": self.steps,
            "cfg": self.cfg,
            "scheduler": self.scheduler,
            "model": self.model,
            "model_hash": self.model_hash,
            "source": self.source,
            "parameters": self.params,
        }


class GridEntry(NamedTuple):
    """The little a thumbnail grid needs for each row; the full :class:`ImageRecord` is read on demand."""

    id: int
    relpath: str
    file_size: int
    mtime_ns: int
    favourite: int


_COLUMNS = (
    "id, path, created, file_size, mtime_ns, width, height, favourite, prompt, negative_prompt, seed, steps, cfg, "
    "scheduler, model, model_hash, source, params, ?"
)


def fts_query(text: str) -> str:
    """A safe FTS5 query for what a person typed: every word must appear (as a word prefix), in any order."""
    words = re.findall(r"\w+", text[:1000])[:32]
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


class _TooNew(Exception):
    pass


def _is_damage(exc: BaseException) -> bool:
    """True for errors that mean the database file itself is unusable (and may be rebuilt from the files)."""
    if isinstance(exc, _TooNew):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("not a database", "malformed", "quick_check", "corrupt", "no such table"))


class GalleryIndex:
    def __init__(self, path: Path, root: Path):
        self.path = Path(path)
        self.root = Path(root)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        #: True when the index was just created or rebuilt and the gallery folder must be scanned in full.
        self.needs_full_scan = False
        #: Why the index was rebuilt ("" when it was not): for a log line or a status message.
        self.rebuilt_reason = ""
        self._open()

    # -- connections ------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        c.execute("PRAGMA synchronous = NORMAL")
        return c

    @property
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise RuntimeError("the gallery index is closed")
            c = self._connect()
            self._local.conn = c
            with self._lock:
                self._connections.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for c in connections:
            try:
                c.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    # -- opening, checking, migrating ---------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskError(
                f"Darkroom cannot create its data folder {self.path.parent}: {exc.strerror or exc}.", repr(exc)
            ) from None
        existed = self.path.exists()
        try:
            self._prepare(check=existed)
        except (sqlite3.DatabaseError, _TooNew) as exc:
            if not _is_damage(exc):  # locked by another process, no permission…: never throw the index away
                self.close()
                raise DiskError(f"Darkroom cannot open its gallery index {self.path}: {exc}.", repr(exc)) from None
            reason = "it is from a newer Darkroom" if isinstance(exc, _TooNew) else f"it is damaged ({exc})"
            log.warning("rebuilding the gallery index %s: %s", self.path, reason)
            self._discard()
            try:
                self._prepare(check=False)
            except sqlite3.Error as exc2:
                raise DiskError(f"Darkroom cannot create its gallery index in {self.path.parent}.", repr(exc2)) from None
            self.rebuilt_reason = reason
            existed = False
        if not existed:
            self.needs_full_scan = True
            self.rebuilt_reason = self.rebuilt_reason or "it did not exist"

    def _prepare(self, check: bool) -> None:
        c = self.conn
        if check:
            row = c.execute("PRAGMA quick_check").fetchone()
            if not row or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        mode = self._enable_wal(c)
        if not mode or str(mode[0]).lower() != "wal":
            log.info("the gallery index is not in WAL mode (%s); it will still work", mode)
        self._migrate(c)
        root = str(self.root.expanduser().resolve())
        row = c.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
        if row is None or row[0] != root:
            with self.transaction() as t:
                t.execute("INSERT INTO meta (key, value) VALUES ('root', ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (root,))
            if row is not None:
                self.needs_full_scan = True  # another folder: keep the rows (and favourites) that still match

    @staticmethod
    def _enable_wal(c: sqlite3.Connection) -> tuple | None:
        """Switch to WAL. SQLite answers "locked" at once, without waiting for the busy timeout, while another
        process is creating the same database, so this waits here."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return c.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self, c: sqlite3.Connection) -> None:
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _TooNew()
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            self.needs_full_scan = True
        with self.transaction() as t:
            version = t.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated it
            for target, statements in MIGRATIONS:
                if target <= version:
                    continue
                for sql in statements:
                    t.execute(sql)
                t.execute(f"PRAGMA user_version = {int(target)}")
                version = target

    def _discard(self) -> None:
        """Move a damaged database aside (kept for a developer to look at) so a fresh one can be made."""
        self.close()
        self._closed = False
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                try:
                    p.replace(Path(f"{self.path}.broken-{stamp}{suffix}"))
                except OSError:
                    try:
                        p.unlink()
                    except OSError:
                        pass

    # -- writing ----------------------------------------------------------------------------------------------
    _UPSERT = (
        "INSERT INTO images (path, created, file_size, mtime_ns, width, height, prompt, negative_prompt, seed, steps, "
        "cfg, scheduler, model, model_hash, source, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET created = excluded.created, file_size = excluded.file_size, "
        "mtime_ns = excluded.mtime_ns, width = excluded.width, height = excluded.height, prompt = excluded.prompt, "
        "negative_prompt = excluded.negative_prompt, seed = excluded.seed, steps = excluded.steps, cfg = excluded.cfg, "
        "scheduler = excluded.scheduler, model = excluded.model, model_hash = excluded.model_hash, "
        "source = excluded.source, params = excluded.params"
    )

    @staticmethod
    def _row(e: IndexEntry) -> tuple:
        return (
            e.relpath, e.created, e.file_size, e.mtime_ns, e.width, e.height, e.prompt, e.negative_prompt,
            e.seed, e.steps, e.cfg, e.scheduler, e.model, e.model_hash, e.source,
            json.dumps(e.params, ensure_ascii=False, separators=(",", ":")),
        )

    def upsert(self, entry: IndexEntry) -> ImageRecord:
        with self.transaction() as t:
            t.execute(self._UPSERT, self._row(entry))
            row = t.execute(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (self._root_arg, entry.relpath)).fetchone()
        return self._record(row)

    def upsert_many(self, entries: Sequence[IndexEntry]) -> None:
        if entries:
            with self.transaction() as t:
                t.executemany(self._UPSERT, [self._row(e) for e in entries])

    def remove_paths(self, relpaths: Iterable[str]) -> int:
        relpaths = list(relpaths)
        removed = 0
        for i in range(0, len(relpaths), 500):
            chunk = relpaths[i:i + 500]
            with self.transaction() as t:
                removed += t.execute(
                    f"DELETE FROM images WHERE path IN ({','.join('?' * len(chunk))})", chunk
                ).rowcount
        return removed

    def remove_ids(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        removed = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            with self.transaction() as t:
                removed += t.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk).rowcount
        return removed

    def set_favourite(self, ids: Iterable[int], favourite: bool) -> None:
        ids = [int(i) for i in ids]
        with self.transaction() as t:
            t.executemany("UPDATE images SET favourite = ? WHERE id = ?", [(1 if favourite else 0, i) for i in ids])

    def favourite_paths(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM images WHERE favourite = 1")]

    def mark_favourite_paths(self, relpaths: Iterable[str]) -> None:
        with self.transaction() as t:
            t.executemany("UPDATE images SET favourite = 1 WHERE path = ?", [(p,) for p in relpaths])

    def clear(self) -> None:
        with self.transaction() as t:
            t.execute("DELETE FROM images")
            t.execute("INSERT INTO images_fts (images_fts) VALUES ('rebuild')")

    # -- reading ----------------------------------------------------------------------------------------------
    def _record(self, row: tuple | None) -> ImageRecord | None:
        return ImageRecord._make(row) if row is not None else None

    @property
    def _root_arg(self) -> str:
        return str(self.root)

    def _where(self, text: str, favourites_only: bool) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        match = fts_query(text) if text else ""
        if match:
            clauses.append("id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
            args.append(match)
        if favourites_only:
            clauses.append("favourite = 1")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def query(
        self,
        text: str = "",
        *,
        favourites_only: bool = False,
        newest_first: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ImageRecord]:
        where, args = self._where(text, favourites_only)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLUMNS} FROM images{where} ORDER BY created {order}, id {order}"
        args = [self._root_arg] + args
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        return list(map(ImageRecord._make, self.conn.execute(sql, args)))

    def entries(self, text: str = "", *, favourites_only: bool = False, newest_first: bool = True) -> list[GridEntry]:
        """Every matching image as a light :class:`GridEntry`, in order."""
        where, args = self._where(text, favourites_only)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT id, path, file_size, mtime_ns, favourite FROM images{where} ORDER BY created {order}, id {order}"
        return list(map(GridEntry._make, self.conn.execute(sql, args)))

    def count(self, text: str = "", *, favourites_only: bool = False) -> int:
        where, args = self._where(text, favourites_only)
        return self.conn.execute(f"SELECT COUNT(*) FROM images{where}", args).fetchone()[0]

    def get(self, image_id: int) -> ImageRecord | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (self._root_arg, int(image_id))).fetchone()
        return self._record(row)

    def get_by_path(self, relpath: str) -> ImageRecord | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (self._root_arg, relpath)).fetchone()
        return self._record(row)

    def file_stats(self) -> dict[str, tuple[int, int]]:
        """relpath -> (file size, mtime in ns), for change detection."""
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT path, file_size, mtime_ns FROM images")}

    def integrity_ok(self) -> bool:
        row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row) and row[0] == "ok"
