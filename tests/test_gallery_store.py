"""Saving into the gallery: names, atomic writes, full or read-only disks, crashes and two writers at once."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.gallery_fixtures import make_ready

from engine import paths
from engine.errors import DiskError
from engine.gallery import Gallery, read_parameters, store

REPO = Path(__file__).resolve().parent.parent
NAME_RE = re.compile(r"^\d{8}-\d{6}-\d{3}-\d+-[0-9a-f]{8}\.png$")


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_save_writes_a_png_in_a_day_folder_and_indexes_it(gallery):
    ready = make_ready(seed=77)
    saved = gallery.save(ready)
    assert saved.path.parent.parent == paths.default_gallery_dir()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", saved.path.parent.name)
    assert NAME_RE.match(saved.path.name) and "-77-" in saved.path.name
    assert saved.record is not None and saved.record.id > 0
    assert [r.id for r in gallery.records()] == [saved.record.id]
    with Image.open(saved.path) as img:
        img.load()
        assert img.size == (16, 24)  # (width, height) of a 24×16 (H×W) array
        assert (bytes(img.tobytes()) == ready.image.tobytes())
    # the file records the model by name, not by the local path the request held
    assert read_parameters(saved.path).build().request == dataclasses.replace(ready.request, model="tiny-sd")
    assert saved.record.prompt == ready.request.prompt and saved.record.seed == 77
    assert saved.record.params == read_parameters(saved.path).fields  # the row a rescan of the file would make


def test_names_never_collide_and_sort_by_time(gallery):
    saved = [gallery.save(make_ready(seed=5)) for _ in range(40)]
    names = [s.path.name for s in saved]
    assert len(set(names)) == 40
    assert names == sorted(names, key=lambda n: n[:19])  # timestamp prefix is in saving order
    assert gallery.count() == 40


def test_time_from_name_round_trips():
    from datetime import datetime

    when = datetime(2025, 3, 4, 5, 6, 7, 891000)
    name = store.image_file_name(when, 42)
    assert abs(store.time_from_name(name) - when.timestamp()) < 0.002
    assert store.time_from_name("holiday.png") is None


def _no_leftovers(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_full_disk_while_writing_is_reported_and_leaves_nothing(gallery, monkeypatch):
    gallery.save(make_ready(seed=1))
    before = all_files(gallery.root)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DiskError) as e:
        gallery.save(make_ready(seed=2))
    assert "full" in e.value.message and str(gallery.root) in e.value.message
    assert "canvas" not in e.value.message  # each front end says where the unsaved image is
    assert all_files(gallery.root) == before
    assert gallery.count() == 1


def test_full_disk_at_fsync_is_reported_and_leaves_nothing(gallery, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskError) as e:
        gallery.save(make_ready())
    assert "full" in e.value.message
    monkeypatch.undo()
    assert [p for p in gallery.root.rglob("*") if p.is_file()] == []
    assert gallery.count() == 0


def test_read_only_gallery_folder(tmp_path, monkeypatch):
    root = tmp_path / "pictures"
    root.mkdir()
    g = Gallery(root)
    if os.geteuid() != 0:
        root.chmod(0o555)
    else:  # root ignores permissions: make the file system say what a read-only one says
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **k):
            if str(self).startswith(str(root)):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.raises(DiskError) as e:
            g.save(make_ready())
        assert "not allowed to write" in e.value.message and str(root) in e.value.message
    finally:
        root.chmod(0o755)
        g.close()
    assert list(root.rglob("*.png")) == []


def test_missing_chosen_folder_is_not_created_elsewhere(tmp_path):
    root = tmp_path / "unplugged-drive" / "Darkroom"
    g = Gallery(root)
    with pytest.raises(DiskError) as e:
        g.save(make_ready())
    assert "does not exist" in e.value.message
    assert not root.parent.exists()
    with pytest.raises(DiskError):
        g.rescan()
    g.close()


def test_default_folder_is_created(gallery):
    assert not gallery.root.exists()
    gallery.save(make_ready())
    assert gallery.root.is_dir()


def test_save_as_elsewhere(gallery, tmp_path):
    target = tmp_path / "elsewhere" / "keep.png"
    target.parent.mkdir()
    ready = make_ready(prompt="saved by hand")
    assert gallery.save_as(ready, target) == target
    assert read_parameters(target).fields["prompt"] == "saved by hand"
    assert gallery.count() == 0  # outside the gallery: not indexed
    with pytest.raises(DiskError):
        gallery.save_as(ready, tmp_path / "nowhere" / "x.png")
    assert [p.name for p in target.parent.iterdir()] == ["keep.png"]


def test_many_threads_save_at_once(gallery):
    errors = []

    def worker(k):
        try:
            for i in range(8):
                gallery.save(make_ready(seed=k))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert gallery.count() == 32
    assert len(list(gallery.root.rglob("*.png"))) == 32


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tests.gallery_fixtures import make_ready
    from engine.gallery import Gallery, store, gallery as gallery_module
    mode, count = sys.argv[1], int(sys.argv[2])
    if mode == "mid-write":
        real = store._write_all
        def slow(fd, data):
            real(fd, data[: len(data) // 2])
            print("WRITING", flush=True)
            time.sleep(60)
        store._write_all = slow
    elif mode == "before-index":
        def stop(self, path, ready, chunks, created):
            print("LINKED", flush=True)
            time.sleep(60)
        gallery_module.Gallery._index_saved = stop
    g = Gallery()
    for i in range(count):
        g.save(make_ready(size=(256, 256), seed=i, prompt="crash test " + str(i)))
        print("SAVED", i, flush=True)
    print("DONE", flush=True)
    """
)


def _spawn(mode: str, count: int, home: Path) -> subprocess.Popen:
    code = WRITER.format(repo=str(REPO))
    env = dict(os.environ, DARKROOM_HOME=str(home), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, mode, str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(marker):
            return lines
    proc.kill()
    raise AssertionError(f"{marker} never came: {lines} {proc.stderr.read()}")


def _check_consistent(home: Path, expect_files: int) -> None:
    root = home / "gallery"
    pngs = sorted(root.rglob("*.png"))
    assert len(pngs) == expect_files
    for p in pngs:  # every visible file is a whole image with its parameters
        with Image.open(p) as img:
            img.load()
        assert read_parameters(p).fields["prompt"].startswith("crash test")
    db = home / "data" / "gallery.sqlite3"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {r[0] for r in con.execute("SELECT path FROM images")}
    con.close()
    assert rows <= {p.relative_to(root).as_posix() for p in pngs}  # no row without its file
    g = Gallery()
    result = g.rescan()
    assert {r.relpath for r in g.records()} == {p.relative_to(root).as_posix() for p in pngs}
    assert g.index.integrity_ok()
    g.close()
    hidden = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert hidden == []  # the dead writer's temporary file was cleaned up by the rescan
    return result


@pytest.mark.parametrize("mode, expect_files", [("mid-write", 2), ("before-index", 3)])
def test_sigkill_during_save_leaves_no_partial_file_and_a_consistent_index(darkroom_home, mode, expect_files):
    home = darkroom_home
    home.mkdir(exist_ok=True)
    # two whole saves first, so the index has rows; then the third save is killed part way
    first = _spawn("normal", 2, home)
    assert first.wait(60) == 0, first.stderr.read()
    proc = _spawn(mode, 1, home)
    _wait_for(proc, "WRITING" if mode == "mid-write" else "LINKED")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if mode == "mid-write":
        temp = [p for p in (home / "gallery").rglob(".darkroom-*")]
        assert len(temp) == 1  # the half-written data exists only under a hidden temporary name
    _check_consistent(home, expect_files)


def test_sigkill_at_a_random_moment(darkroom_home):
    home = darkroom_home
    home.mkdir(exist_ok=True)
    proc = _spawn("normal", 200, home)
    _wait_for(proc, "SAVED 3")
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    root = home / "gallery"
    _check_consistent(home, len(list(root.rglob("*.png"))))


def test_two_processes_write_the_same_gallery(darkroom_home):
    home = darkroom_home
    home.mkdir(exist_ok=True)
    procs = [_spawn("normal", 15, home) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "DONE" in out
    g = Gallery()
    assert g.count() == 30
    assert len(list((home / "gallery").rglob("*.png"))) == 30
    assert g.index.integrity_ok()
    assert g.rescan().changed is False
    g.close()


def test_nul_never_reaches_a_png_text_value():
    import numpy as np

    data = store.encode_png(np.zeros((4, 4, 3), np.uint8), {"parameters": "a\0b", "plain": "x"})
    assert data.count(b"a\0b") == 0
    with Image.open(__import__("io").BytesIO(data)) as im:
        assert im.text["parameters"] == "a\ufffdb" and im.text["plain"] == "x"


def test_open_regular_reads_files_and_refuses_the_rest(tmp_path):
    from tests.gallery_fixtures import deadline, fifo

    (tmp_path / "f.png").write_bytes(b"png")
    with store.open_regular(tmp_path / "f.png") as fp:
        assert fp.read() == b"png"
    (tmp_path / "link.png").symlink_to(tmp_path / "f.png")
    with store.open_regular(tmp_path / "link.png") as fp:
        assert fp.read() == b"png"
    with deadline(10):
        for bad in (fifo(tmp_path / "pipe.png"), tmp_path, Path("/dev/null")):
            with pytest.raises(OSError) as e:
                store.open_regular(bad)
            assert "not a regular file" in str(e.value)
    with pytest.raises(FileNotFoundError):
        store.open_regular(tmp_path / "missing.png")


def test_a_default_gallery_never_created_is_empty(gallery):
    assert not gallery.root.exists()
    assert gallery.rescan() == type(gallery.rescan())()
    assert gallery.reindex().total == 0 and gallery.records() == []
    assert not gallery.root.exists()


def test_a_gallery_folder_that_held_images_and_vanished_is_reported(gallery):
    import shutil

    gallery.save(make_ready())
    gallery.rescan()
    shutil.rmtree(gallery.root)
    for scan in (gallery.rescan, gallery.reindex):
        with pytest.raises(DiskError) as e:
            scan()
        assert "is a drive disconnected?" in e.value.message
    assert gallery.count() == 1  # the index is kept for when the drive comes back


def test_disk_errors_give_no_front_end_advice(tmp_path):
    message = store.disk_error(OSError(errno.ENOSPC, "No space left"), tmp_path).message
    assert "disk holding" in message and "canvas" not in message
