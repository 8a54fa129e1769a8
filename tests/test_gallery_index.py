"""The SQLite index: search, favourites, rescans of outside changes, rebuilding, deleting and exporting."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.gallery_fixtures import comfy_graph, make_ready, png_with_text

from engine.errors import DiskError
from engine.gallery import Gallery, gallery as gallery_module
from engine.gallery.index import SCHEMA_VERSION, fts_query


def fill(g: Gallery) -> dict[str, int]:
    ids = {}
    for key, prompt, negative in [
        ("fox", "a red fox in the snow, watercolor", "blurry"),
        ("city", "neon city at night, rain", "lowres, watermark"),
        ("owl", "an owl in a dark forest", "snow"),
    ]:
        ids[key] = g.save(make_ready(prompt=prompt, negative_prompt=negative)).record.id
    return ids


def test_full_text_search(gallery):
    ids = fill(gallery)
    assert [r.id for r in gallery.search("fox")] == [ids["fox"]]
    assert {r.id for r in gallery.search("snow")} == {ids["fox"], ids["owl"]}  # negative prompts too
    assert [r.id for r in gallery.search("neo nig")] == [ids["city"]]  # every word, as a prefix
    assert gallery.search("fox city") == []
    assert gallery.count("water") == 2  # watercolor, watermark
    assert len(gallery.search('"),(*: -')) == 3  # nothing searchable: everything
    assert gallery.search("zebra") == []


def test_fts_query_is_always_safe():
    assert fts_query('a "b" OR c*') == '"a"* "b"* "OR"* "c"*'
    assert fts_query("") == ""


def test_order_and_favourites(gallery):
    ids = fill(gallery)
    assert [r.id for r in gallery.records()] == [ids["owl"], ids["city"], ids["fox"]]
    assert [r.id for r in gallery.records(newest_first=False)] == [ids["fox"], ids["city"], ids["owl"]]
    gallery.set_favourite(ids["city"])
    assert [r.id for r in gallery.records(favourites_only=True)] == [ids["city"]]
    assert gallery.get(ids["city"]).favourite
    gallery.set_favourite([ids["city"]], False)
    assert gallery.records(favourites_only=True) == []
    assert [e.id for e in gallery.entries("night")] == [ids["city"]]


def test_index_is_wal_and_versioned(gallery):
    fill(gallery)
    con = sqlite3.connect(gallery.index_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_rescan_picks_up_files_added_changed_and_deleted_outside(gallery, tmp_path):
    ids = fill(gallery)
    day = gallery.root / "imported"
    day.mkdir()
    a1111 = "a castle\nNegative prompt: fog\nSteps: 30, Sampler: Euler a, CFG scale: 5, Seed: 42, Size: 512x512"
    (day / "00001-42.png").write_bytes(png_with_text({"parameters": a1111}))
    (day / "comfy.png").write_bytes(png_with_text({"prompt": json.dumps(comfy_graph())}))
    (day / "photo.png").write_bytes(png_with_text({}))  # no parameters: still an image in the gallery
    (day / "notes.png").write_text("not an image")
    (day / ".hidden.png").write_bytes(png_with_text({}))
    owl = gallery.get(ids["owl"]).path
    owl.unlink()
    result = gallery.rescan()
    assert (result.added, result.removed, result.skipped) == (3, 1, 1)
    castle = gallery.search("castle")
    assert len(castle) == 1 and castle[0].source == "a1111" and castle[0].seed == 42
    assert gallery.search("bottle")[0].source == "comfyui"
    assert gallery.get(ids["owl"]) is None
    assert gallery.count() == 5
    # a file replaced outside: re-read
    (day / "00001-42.png").write_bytes(png_with_text({"parameters": a1111.replace("castle", "tower")}))
    os.utime(day / "00001-42.png", ns=(1, 1))
    result = gallery.rescan()
    assert (result.added, result.updated, result.removed) == (0, 1, 0)
    assert gallery.search("castle") == [] and len(gallery.search("tower")) == 1
    assert gallery.rescan().changed is False


def test_missing_index_is_rebuilt_from_the_files(darkroom_home):
    g = Gallery()
    fill(g)
    g.close()
    os.remove(g.index_path)
    g = Gallery()
    assert g.needs_full_scan and g.count() == 0
    g.rescan()
    assert g.count() == 3 and not g.needs_full_scan
    assert {r.prompt for r in g.search("fox")} == {"a red fox in the snow, watercolor"}
    g.close()


def test_corrupt_index_is_rebuilt_from_the_files(darkroom_home):
    g = Gallery()
    fill(g)
    g.close()
    for suffix in ("-wal", "-shm"):
        Path(str(g.index_path) + suffix).unlink(missing_ok=True)
    g.index_path.write_bytes(b"this is not a database" * 100)
    g = Gallery()
    assert g.needs_full_scan and "damaged" in g.index.rebuilt_reason
    assert list(g.index_path.parent.glob("gallery.sqlite3.broken-*"))  # kept aside for a developer
    g.rescan()
    assert g.count() == 3
    g.close()


def test_index_from_a_newer_version_is_rebuilt(darkroom_home):
    g = Gallery()
    fill(g)
    g.close()
    con = sqlite3.connect(g.index_path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.commit()
    con.close()
    g = Gallery()
    assert g.needs_full_scan and "newer" in g.index.rebuilt_reason
    g.rescan()
    assert g.count() == 3
    g.close()


def test_empty_database_file_is_migrated(darkroom_home):
    from engine import paths

    path = paths.data_dir() / "gallery.sqlite3"
    path.parent.mkdir(parents=True)
    sqlite3.connect(path).close()  # an empty version-0 database
    g = Gallery()
    assert g.needs_full_scan
    assert g.index.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    g.close()


def test_a_locked_index_is_reported_and_never_thrown_away(darkroom_home, tmp_path, monkeypatch):
    from engine.gallery import index as index_module

    g = Gallery()
    fill(g)
    g.close()
    monkeypatch.setattr(index_module, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(g.index_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with pytest.raises(DiskError) as e:
            Gallery(tmp_path / "another-folder")  # must write the new folder into the index
        assert "cannot open its gallery index" in e.value.message
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(g.index_path.parent.glob("*.broken-*"))
    g = Gallery()
    assert g.count() == 3
    g.close()


def test_reindex_keeps_favourites(gallery):
    ids = fill(gallery)
    gallery.set_favourite(ids["fox"])
    result = gallery.reindex()
    assert result.total == 3
    favs = gallery.records(favourites_only=True)
    assert [r.prompt for r in favs] == ["a red fox in the snow, watercolor"]


def test_another_gallery_folder_keeps_matching_rows(darkroom_home, tmp_path):
    g = Gallery()
    ids = fill(g)
    g.set_favourite(ids["city"])
    old_root = g.root
    g.close()
    new_root = tmp_path / "moved"
    shutil.copytree(old_root, new_root)
    g = Gallery(new_root)
    assert g.needs_full_scan
    g.rescan()
    assert g.count() == 3
    assert [r.prompt for r in g.records(favourites_only=True)] == ["neon city at night, rain"]
    assert str(g.records()[0].path).startswith(str(new_root))
    g.close()


def test_delete_moves_to_trash(gallery, monkeypatch):
    trashed = []
    monkeypatch.setattr(gallery_module, "move_to_trash", lambda p: (trashed.append(p), os.remove(p)))
    ids = fill(gallery)
    fox = gallery.get(ids["fox"])
    key = gallery.thumbnail_key(fox)
    from engine.gallery import thumbnails

    assert thumbnails.get_thumbnail(gallery.thumbnail_root, key, fox.path) is not None
    assert thumbnails.cache_file(gallery.thumbnail_root, key).exists()
    replay = fox.path.with_suffix(".replay.webp")
    replay.write_bytes(b"RIFF")
    result = gallery.delete([ids["fox"]])
    assert result.deleted == (ids["fox"],) and result.failed == ()
    assert trashed == [fox.path, replay] and not fox.path.exists() and not replay.exists()
    assert gallery.get(ids["fox"]) is None and gallery.count() == 2
    assert not thumbnails.cache_file(gallery.thumbnail_root, key).exists()


def test_delete_failure_is_reported_and_keeps_the_row(gallery, monkeypatch):
    def refuse(p):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(gallery_module, "move_to_trash", refuse)
    ids = fill(gallery)
    result = gallery.delete(ids["owl"])
    assert result.deleted == () and "trash" in result.failed[0][1]
    assert gallery.get(ids["owl"]) is not None


def test_delete_never_touches_files_outside_the_gallery(gallery, monkeypatch, tmp_path):
    trashed = []
    monkeypatch.setattr(gallery_module, "move_to_trash", trashed.append)
    ids = fill(gallery)
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"x")
    con = sqlite3.connect(gallery.index_path)
    con.execute("UPDATE images SET path = ? WHERE id = ?", ("../../precious.png", ids["fox"]))
    con.commit()
    con.close()
    result = gallery.delete([ids["fox"]])
    assert trashed == [] and outside.exists()
    assert result.failed and "outside" in result.failed[0][1]


def test_export_copies_and_never_overwrites(gallery, tmp_path):
    ids = fill(gallery)
    dest = tmp_path / "export"
    first = gallery.export([ids["fox"], ids["owl"]], dest)
    again = gallery.export([ids["fox"]], dest)
    assert len(first) == 2 and len(again) == 1
    assert again[0].name.endswith(" (2).png")
    assert again[0].read_bytes() == gallery.get(ids["fox"]).path.read_bytes()
    assert len(list(dest.iterdir())) == 3
    with pytest.raises(DiskError):
        gallery.export([ids["fox"]], tmp_path / "no" / "such" / "folder")


def test_a_fifo_named_png_is_skipped_by_every_scan(gallery):
    from tests.gallery_fixtures import deadline, fifo

    ids = fill(gallery)
    folder = gallery.get(ids["fox"]).path.parent
    fifo(folder / "pipe.png")
    with deadline(20):
        assert gallery.rescan(force=True).skipped == 0
        assert gallery.reindex().total == len(ids)
    assert gallery.count() == len(ids)


def test_thumbnail_of_a_fifo_is_none(tmp_path):
    from engine.gallery import thumbnails
    from tests.gallery_fixtures import deadline, fifo

    with deadline(20):
        assert thumbnails.make_thumbnail(fifo(tmp_path / "pipe.png")) is None


def test_switching_to_wal_waits_for_another_process_creating_the_index():
    """SQLite answers "locked" at once (not after its busy timeout) while another process creates the database."""
    from engine.gallery.index import GalleryIndex

    class Busy:
        def __init__(self, times):
            self.left = times

        def execute(self, sql):
            assert sql == "PRAGMA journal_mode = WAL"
            if self.left:
                self.left -= 1
                raise sqlite3.OperationalError("database is locked")
            return self

        def fetchone(self):
            return ("wal",)

    assert GalleryIndex._enable_wal(Busy(3)) == ("wal",)
    with pytest.raises(sqlite3.OperationalError):
        GalleryIndex._enable_wal(type("Broken", (), {"execute": lambda self, sql: (_ for _ in ()).throw(
            sqlite3.OperationalError("disk I/O error"))})())


def test_export_of_an_image_replaced_by_a_fifo_fails_cleanly(gallery, tmp_path):
    from tests.gallery_fixtures import deadline, fifo

    ids = fill(gallery)
    path = gallery.get(ids["fox"]).path
    path.unlink()
    fifo(path)  # after the last scan: the index still lists it
    with deadline(20):
        with pytest.raises(DiskError) as e:
            gallery.export([ids["fox"]], tmp_path / "out")
    assert "not a regular file" in e.value.message
