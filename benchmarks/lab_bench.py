#!/usr/bin/env python3
"""Diffusion Lab figures: live mode in the real window, replay memory, animation export and a compare grid.

    QT_QPA_PLATFORM=offscreen python benchmarks/lab_bench.py [--out FILE] [--edits 8] [--device cpu]

Prints one JSON object (or writes it to ``--out`` and prints one summary line):

- ``live``: the real window (offscreen, no gallery) with the bundled model, live mode on at its default step cap
  (the model's 25 recommended steps capped at 8). ``edit_to_final_s``: a keystroke in the prompt box → the
  finished live picture of the new prompt on the canvas (includes the 150 ms quiet time), median/min/max over
  ``--edits`` edits made with the engine idle, and the engine's own seconds for each of those pictures (prompt
  encoding, denoising, VAE decode); ``updates_per_s_closed_loop``: edits made as soon as the previous
  live picture is shown, finished pictures per second; ``typing``: a word typed at 5 keys per second (200 ms
  apart, longer than the quiet time, so every key starts a job): jobs started, cancelled as stale, pictures shown
  during the typing, and last key → final picture.
- ``replay_bytes``: the frames :mod:`engine.replay` keeps (its real recorder on zero latents, no model) for a
  50-step 1024² SDXL picture, a 50-step 512² SD1.5 one and the largest (150 steps at 2048²).
- ``animation_export_s``: :func:`engine.animation.export_animation` of a 50-step 1024² replay (50 frames of
  128² plus the 1024² picture, written at 768²), WebP and GIF, median of 3, and the file sizes.
- ``grid_4x4``: a 4×4 grid (cfg × seed) with the bundled model at its recommended settings and native size,
  through the engine, every cell saved to a temporary gallery, then composed: total and per-cell seconds.

A benchmark, not a test: nothing here asserts. Never imported by the app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
BUNDLED = "darkroom-emoji"


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4),
            "n": len(values)}


# -- live mode in the window -----------------------------------------------------------------------------------------
def bench_live(edits: int, device: str) -> dict:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from engine.engine import EngineOptions
    from gui.main_window import MainWindow
    from gui.testing import spin, wait_until

    app = QApplication.instance() or QApplication([])
    window = MainWindow(engine_options=EngineOptions(device=device), gallery=None, start_engine=False)
    window.resize(1200, 800)
    window.show()
    window.start_engine()
    wait_until(lambda: window.models.has_models(), 30)
    window.form_model.set_values({"model": BUNDLED, "prompt": "a cat", "seed": 7, "batch_count": 1})
    window.models.apply_model_defaults(force=True)
    live = window.lab.live_mode
    prompt = window.form.widget("prompt")
    prompt.setFocus()
    prompt.moveCursor(prompt.textCursor().MoveOperation.End)
    started: list[int] = []
    cancelled: list[int] = []
    window.bridge.job_cancelled.connect(lambda e: cancelled.append(e.job_id))
    window.jobs.jobs_changed.connect(lambda: started.extend(j.job_id for j in window.jobs.jobs()
                                                           if j.job_id not in started))

    def shown_prompt() -> str | None:
        shown = window.jobs.shown
        return shown.result.request.prompt if shown is not None and shown.result is not None else None

    t0 = time.perf_counter()
    live.model.set_enabled(True)
    wait_until(lambda: shown_prompt() == "a cat" and not window.jobs.busy, 300)
    first = time.perf_counter() - t0
    steps = window.jobs.shown.result.request.steps
    size = window.jobs.shown.result.request.width, window.jobs.shown.result.request.height

    latencies, engine_s = [], []
    for i in range(edits):  # one keystroke each, engine idle
        key = "abcdefghijklmnopqrstuvwxyz"[i % 26]
        t0 = time.perf_counter()
        QTest.keyClick(prompt, key)
        expected = window.form_model.value("prompt")
        wait_until(lambda e=expected: shown_prompt() == e and not window.jobs.busy, 120)
        latencies.append(time.perf_counter() - t0)
        engine_s.append(window.jobs.shown.result.seconds)
        spin(50)

    loop_n = max(4, edits)
    t0 = time.perf_counter()
    for i in range(loop_n):
        QTest.keyClick(prompt, "x")
        expected = window.form_model.value("prompt")
        wait_until(lambda e=expected: shown_prompt() == e, 120)
    loop_s = time.perf_counter() - t0
    wait_until(lambda: not window.jobs.busy, 120)

    # Typing a word at 5 keys per second: every key starts a live job; older ones are cancelled as stale.
    before_started, before_cancelled = len(started), len(cancelled)
    shown_during: list[str] = []
    window.jobs.shown_changed.connect(lambda s: s.result is not None and shown_during.append(s.result.request.prompt))
    word = " lighthouse"
    for ch in word:
        QTest.keyClick(prompt, ch if ch != " " else Qt.Key.Key_Space)
        spin(200)
    typed_at = time.perf_counter()
    final_prompt = window.form_model.value("prompt")
    wait_until(lambda: shown_prompt() == final_prompt and not window.jobs.busy, 120)
    typing = {
        "keys": len(word), "key_interval_ms": 200, "jobs_started": len(started) - before_started,
        "jobs_cancelled_as_stale": len(cancelled) - before_cancelled,
        "pictures_shown_while_typing": len(shown_during) - 1,
        "last_key_to_final_s": round(time.perf_counter() - typed_at + 0.2, 4),  # the last key was 200 ms before
    }
    live.model.set_enabled(False)
    window.close()
    window.bridge.wait_stopped(30)
    app.processEvents()
    return {
        "model": BUNDLED, "size": list(size), "live_steps": steps, "debounce_ms": 150,
        "first_live_picture_s_incl_engine_start_and_model_load": round(first, 3),
        "edit_to_final_s": _summary(latencies),
        "engine_s_per_live_picture": _summary(engine_s),
        "updates_per_s_closed_loop": round(loop_n / loop_s, 3),
        "typing": typing,
    }


# -- replay memory ---------------------------------------------------------------------------------------------------
class _FourChannels:
    factors = ((0.3, 0.2, 0.2), (0.2, 0.3, 0.2), (0.2, 0.2, 0.3), (-0.2, -0.2, -0.2))
    bias = (0.0, 0.0, 0.0)


def replay_bytes(side: int, steps: int) -> dict:
    import torch

    from engine.replay import LinearRGB, ReplayRecorder

    recorder = ReplayRecorder(LinearRGB(_FourChannels()))
    recorder.start_image()
    latent = torch.zeros(1, 4, side // 8, side // 8)
    for _ in range(steps):
        recorder.add(latent)
    frames = recorder.frames()
    total = sum(f.nbytes for f in frames)
    return {"image": f"{side}x{side}", "steps": steps, "frame": list(frames[0].shape), "bytes": total,
            "mb": round(total / 2**20, 2)}


# -- animation export ------------------------------------------------------------------------------------------------
def bench_animation(out_dir: Path) -> dict:
    import numpy as np

    from engine.animation import export_animation

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128]
    frames = []
    for k in range(50):  # a smooth picture emerging from noise, as x0 guesses do
        clean = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.float32)
        noise = rng.normal(128, 60, clean.shape)
        mix = k / 49
        frames.append(np.clip(mix * clean + (1 - mix) * noise, 0, 255).astype(np.uint8))
    big = np.kron(frames[-1], np.ones((8, 8, 1), np.uint8))  # the 1024² finished picture
    sequence = [*frames, big]
    report = {"frames": len(sequence), "written_side": 768}
    for suffix in (".webp", ".gif"):
        times = []
        for run in range(3):
            path = out_dir / f"anim-{run}{suffix}"
            t0 = time.perf_counter()
            export_animation(sequence, path, caption="a red apple on a wooden table")
            times.append(time.perf_counter() - t0)
        report[suffix[1:]] = {"seconds": _summary(times), "bytes": path.stat().st_size}
    return report


# -- a 4×4 grid ------------------------------------------------------------------------------------------------------
def bench_grid(device: str, out_dir: Path) -> dict:
    from engine.engine import Engine, EngineOptions, PreviewOptions
    from engine.events import Cancelled, Failed, Finished, ImageReady
    from engine.gallery import Gallery
    from engine.grid import compose, expand, parse_axis
    from engine.models import native_size
    from engine.request import build_request

    width, height = native_size(BUNDLED)
    base = build_request(prompt="a red apple", model=BUNDLED, seed=1, steps=25, cfg=5.0, sampler="DDIM",
                         width=width, height=height).request
    axes = [parse_axis("cfg=3,5,7,9"), parse_axis("seed=1,2,3,4")]
    cells = expand(base, axes)
    gallery = Gallery(out_dir / "gallery", index_path=out_dir / "index.sqlite3")
    images: dict = {}
    done = threading.Event()
    ended = [0]
    by_job: dict = {}
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            cell = by_job.get(event.job_id)
        if cell is None:
            return
        if isinstance(event, ImageReady):
            gallery.save(event)
            images[cell.coords] = event.image
        elif isinstance(event, (Finished, Failed, Cancelled)):
            ended[0] += 1
            if ended[0] == len(cells):
                done.set()

    engine = Engine(on_event, EngineOptions(device=device, preview=PreviewOptions(mode="x0")))
    warm = engine.submit(base)  # model load and first-run costs, not counted
    while warm in engine.pending():
        time.sleep(0.05)
    t0 = time.perf_counter()
    with lock:
        for cell in cells:
            by_job[engine.submit(cell.request)] = cell
    done.wait(1800)
    made = time.perf_counter() - t0
    t1 = time.perf_counter()
    grid = compose(images, axes, (width, height))
    composed = time.perf_counter() - t1
    engine.shutdown(timeout=30)
    gallery.close()
    return {"model": BUNDLED, "cells": len(cells), "made": len(images), "size": [width, height], "steps": 25,
            "sampler": "DDIM", "cells_made_and_saved_s": round(made, 3), "per_cell_s": round(made / len(cells), 3),
            "compose_s": round(composed, 4), "grid_pixels": list(grid.shape[:2][::-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", nargs="*", default=(), choices=("live", "animation", "grid"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="darkroom-lab-bench-") as tmp:
        os.environ["DARKROOM_HOME"] = str(Path(tmp) / "home")  # no settings or gallery of the person touched
        report: dict = {
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": args.device, "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "replay_bytes": {"sdxl_1024_50_steps": replay_bytes(1024, 50), "sd15_512_50_steps": replay_bytes(512, 50),
                             "largest_2048_150_steps": replay_bytes(2048, 150)},
        }
        if "animation" not in args.skip:
            report["animation_export_s"] = bench_animation(Path(tmp))
        if "live" not in args.skip:
            report["live"] = bench_live(args.edits, args.device)
        if "grid" not in args.skip:
            report["grid_4x4"] = bench_grid(args.device, Path(tmp))
        report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        live = report.get("live", {})
        print(f"wrote {args.out}: live edit → final {live.get('edit_to_final_s', {}).get('median')} s, "
              f"{live.get('updates_per_s_closed_loop')} updates/s")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
