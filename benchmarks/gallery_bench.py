"""Gallery benchmark: opening, searching and scrolling a gallery of many images.

    QT_QPA_PLATFORM=offscreen python benchmarks/gallery_bench.py [--images 10000] [--dir FOLDER]

Creates ``--images`` small PNG files with Darkroom metadata in a portable Darkroom home (``--dir``, reused when
run again; a temporary folder otherwise), indexes them, warms the thumbnail cache, then measures:

- open: from constructing the Gallery and its view to the first screen of thumbnails painted (warm cache);
- full-text search: ``Gallery.records(text)`` for several queries (median and worst);
- scrolling through every row: peak memory and the thumbnail cache's size.

Targets: open < 1 s, search < 50 ms, memory bounded while scrolling.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = (
    "cat dog fox owl castle forest river mountain city night neon rain portrait oil painting watercolor sketch "
    "lighthouse storm ship desert dune snow winter autumn garden flower rose tulip dragon knight robot cyberpunk "
    "steampunk ocean wave sunset sunrise cloud sky galaxy nebula star moon crystal cave temple ruins bridge train "
    "station market street cafe library book candle lantern mask violin piano jazz"
).split()
NEGATIVE = ("blurry", "low quality", "jpeg artifacts", "watermark", "extra fingers", "text", "")


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(root: Path, count: int) -> float:
    """Write ``count`` 128×128 PNGs with Darkroom metadata across 100 day folders. Returns seconds."""
    import numpy as np

    from engine.events import ImageReady
    from engine.gallery import Gallery, store
    from engine.request import SCHEDULERS, build_request

    rng = random.Random(1234)
    start = datetime(2025, 1, 1, 9, 0, 0)
    t0 = time.perf_counter()
    yy, xx = np.mgrid[0:128, 0:128]
    for i in range(count):
        words = rng.sample(WORDS, 8)
        req = build_request(
            prompt=", ".join(words) + f", variation {i}",
            negative_prompt=rng.choice(NEGATIVE),
            seed=rng.randrange(2**32),
            steps=rng.randrange(10, 50),
            cfg=rng.choice((5.0, 6.5, 7.0, 7.5, 9.0)),
            scheduler=rng.choice(SCHEDULERS),
        ).request
        r, g, b = (rng.randrange(256) for _ in range(3))
        img = np.stack([(xx * r // 128), (yy * g // 128), np.full_like(xx, b)], axis=-1).astype(np.uint8)
        ready = ImageReady(job_id=i, image=img, request=req, image_index=0, image_count=1, model_name="bench")
        when = (start + timedelta(minutes=i * 14.4)).astimezone()
        data = Gallery.encode(ready, when)
        folder = root / store.day_folder_name(when)
        folder.mkdir(parents=True, exist_ok=True)
        store.write_new_file(folder, lambda: store.image_file_name(when, req.seed), data, durable=False)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="Darkroom home to create or reuse")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = args.dir or Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DARKROOM_HOME"] = str(home)

    from engine import paths
    from engine.gallery import Gallery, thumbnails

    root = paths.default_gallery_dir()
    root.mkdir(parents=True, exist_ok=True)
    existing = sum(1 for _ in root.rglob("*.png"))
    print(f"Darkroom home: {home}")
    if existing < args.images:
        seconds = make_images(root, args.images - existing)
        print(f"created {args.images - existing} images in {seconds:.1f} s")
    total_files = sum(1 for _ in root.rglob("*.png"))

    # Index: a cold build (no database), then a no-change rescan as the app does at every start.
    index_path = paths.data_dir() / "gallery.sqlite3"
    cold = not index_path.exists()
    g = Gallery()
    t0 = time.perf_counter()
    result = g.rescan()
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    g.rescan()
    t_rescan = time.perf_counter() - t0
    records = g.records()
    print(f"index {'built' if cold else 'updated'}: {result.total} images in {t_index:.2f} s; "
          f"rescan with no changes {t_rescan * 1000:.0f} ms")

    # Warm the thumbnail cache (what the app's first visit does over time).
    t0 = time.perf_counter()
    made = 0
    for r in records:
        key = g.thumbnail_key(r)
        if not thumbnails.cache_file(g.thumbnail_root, key).exists():
            thumbnails.get_thumbnail(g.thumbnail_root, key, r.path)
            made += 1
    print(f"thumbnail cache warm ({made} made in {time.perf_counter() - t0:.1f} s)")
    g.close()

    # Full-text search.
    g = Gallery()
    queries = ["cat", "neon city", "dragon knight", "watercolor", "variation 9999", "blurry", "lighthouse storm",
               "zzzz", "oil painting portrait", "fo"]
    times = []
    for _ in range(3):
        for q in queries:
            t0 = time.perf_counter()
            g.records(q)
            times.append((time.perf_counter() - t0) * 1000)
    counts = {q: g.count(q) for q in queries[:4]}
    t0 = time.perf_counter()
    everything = g.records()
    t_all = (time.perf_counter() - t0) * 1000
    print(f"full-text search over {len(everything)} images: median {statistics.median(times):.1f} ms, "
          f"worst {max(times):.1f} ms (hits: {counts}); listing all rows {t_all:.0f} ms")
    g.close()

    # Open the gallery view with a warm cache: until the first screen of thumbnails is painted.
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from gui.gallery_view import GalleryView

    rss_before = rss_mb()
    t0 = time.perf_counter()
    gallery = Gallery()
    view = GalleryView(gallery)
    view.resize(args.width, args.height)
    view.show()
    deadline = t0 + 10
    app.processEvents()
    while time.perf_counter() < deadline:
        app.processEvents()
        first, last = view.grid.visible_row_range()
        if last >= first and view.visible_thumbnails_ready():
            break
        time.sleep(0.001)
    view.grid.viewport().repaint()
    t_open = time.perf_counter() - t0
    first, last = view.grid.visible_row_range()
    print(f"open to first screen painted (warm cache): {t_open * 1000:.0f} ms "
          f"({last - first + 1} thumbnails on a {args.width}x{args.height} view)")

    # Search through the view (query + model reset + first thumbnails requested).
    t0 = time.perf_counter()
    view.search.setText("dragon")
    view.refresh()
    t_view_search = (time.perf_counter() - t0) * 1000
    print(f"search in the view (query + grid update): {t_view_search:.1f} ms, {view.model.rowCount()} results")
    view.search.setText("")
    view.refresh()
    app.processEvents()

    # Scroll through everything, a screen at a time, letting each screen load; then all the way back up.
    bar = view.grid.verticalScrollBar()
    last = view.model.index(view.model.rowCount() - 1)
    deadline = time.perf_counter() + 10
    while view.grid.visualRect(last).isEmpty() and time.perf_counter() < deadline:
        app.processEvents()  # the grid lays rows out in batches while idle: let it finish
        time.sleep(0.002)

    def show_screen(value: int) -> None:
        bar.setValue(value)
        view._request_visible()
        wait_until = time.perf_counter() + 5
        while time.perf_counter() < wait_until:
            app.processEvents()
            if view.visible_thumbnails_ready():
                break
            time.sleep(0.0005)
        view.grid.viewport().repaint()

    peak = rss_mb()
    peak_cache = 0
    t0 = time.perf_counter()
    screens = list(range(0, bar.maximum() + 1, max(1, bar.pageStep()))) + [bar.maximum()]
    for value in screens:
        show_screen(value)
        peak = max(peak, rss_mb())
        peak_cache = max(peak_cache, view.model.cache_bytes())
    t_scroll = time.perf_counter() - t0
    after_down = rss_mb()
    for value in reversed(screens):
        show_screen(value)
        peak = max(peak, rss_mb())
        peak_cache = max(peak_cache, view.model.cache_bytes())
    print(f"scrolled through {view.model.rowCount()} images ({len(screens)} screens) in {t_scroll:.1f} s, then "
          f"back up: RSS {rss_before:.0f} MB before opening, {after_down:.0f} MB at the bottom, {rss_mb():.0f} MB "
          f"back at the top, peak {peak:.0f} MB; thumbnails held in memory: at most "
          f"{peak_cache / 2**20:.1f} MB ({view.model.cached_count()} images; the limit is "
          f"{view.model._max_cache_bytes / 2**20:.0f} MB)")
    view.shutdown()
    view.close()
    gallery.close()
    print(f"files on disk: {total_files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
