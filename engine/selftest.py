"""``darkroom --self-test``: proof that this installation makes pictures, in one line.

Generates one picture with the bundled model, headless, into a temporary gallery (a portable ``DARKROOM_HOME``
in a temporary folder, so the person's settings, gallery and caches are never touched), then checks that

- the engine sent a live preview and one finished image, on the device it chose by itself;
- the pixels are not blank (one flat colour, as a NaN in the network decodes to) and the saved PNG holds them;
- the PNG's metadata reads back with the prompt and the seed, and the gallery indexed it.

It prints one line, ``Darkroom self-test: OK (…versions, device…)`` or ``Darkroom self-test: FAILED: reason``,
and returns 0 or 1. Frozen bundles run it too (``Darkroom --self-test``): it is how a packaged build is checked.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROMPT = "red apple"
SEED = 20240611
STEPS = 8
#: Generous: the bundled model takes well under a second per image on a CPU, loading it a few seconds.
TIMEOUT_S = 600.0
#: The standard deviation of the pixels, below which a picture counts as blank.
MIN_PIXEL_STD = 2.0

log = logging.getLogger(__name__)


class SelfTestFailure(Exception):
    """A check failed; the message says which, in plain words."""


def versions() -> dict[str, str]:
    """Darkroom's version and those of the libraries that make its pictures (from package metadata, so nothing
    heavy is imported: a library already imported reports its own ``__version__``)."""
    from importlib import metadata

    from . import __version__

    found = {"Darkroom": __version__}
    for name in ("torch", "diffusers", "transformers", "PySide6"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version("PySide6-Essentials" if name == "PySide6" else name)
            except metadata.PackageNotFoundError:
                version = "not installed"
        found[name] = str(version)
    found["Python"] = platform.python_version()
    return found


@dataclass
class SelfTestReport:
    ok: bool
    reason: str = ""
    device: str = ""
    dtype: str = ""
    seconds: float = 0.0
    #: From the start to the first live preview: the engine starts at once, so this is the libraries' import
    #: and the model's load (nothing waits for a window), the floor of the app's launch → first preview.
    first_preview_s: float = 0.0
    image_size: tuple[int, int] = (0, 0)
    versions: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        if not self.ok:
            return f"Darkroom self-test: FAILED: {self.reason}"
        v = self.versions
        return (f"Darkroom self-test: OK (Darkroom {v.get('Darkroom')}, torch {v.get('torch')}, diffusers "
                f"{v.get('diffusers')}, Python {v.get('Python')}; device {self.device} {self.dtype}; "
                f"{self.image_size[0]}x{self.image_size[1]} picture in {self.seconds:.1f} s, first preview after "
                f"{self.first_preview_s:.1f} s{_frozen_note()})")


def _frozen_note() -> str:
    return "; bundle" if getattr(sys, "frozen", False) else ""


def run(timeout_s: float = TIMEOUT_S, device: str | None = None) -> SelfTestReport:
    """Run the self-test in a temporary portable home; never raises."""
    started = time.perf_counter()
    previous_home = os.environ.get("DARKROOM_HOME")
    with tempfile.TemporaryDirectory(prefix="darkroom-selftest-") as tmp:
        os.environ["DARKROOM_HOME"] = tmp
        try:
            device_name, dtype, size, first_preview_at = _generate_and_check(Path(tmp), timeout_s, device)
        except SelfTestFailure as exc:
            return SelfTestReport(False, str(exc), versions=versions())
        except Exception as exc:  # noqa: BLE001 - a self-test reports every failure as its verdict
            log.exception("self-test failed")
            return SelfTestReport(False, f"unexpected {type(exc).__name__}: {exc}", versions=versions())
        finally:
            if previous_home is None:
                os.environ.pop("DARKROOM_HOME", None)
            else:
                os.environ["DARKROOM_HOME"] = previous_home
    return SelfTestReport(True, device=device_name, dtype=dtype, seconds=time.perf_counter() - started,
                          first_preview_s=first_preview_at - started, image_size=size, versions=versions())


def _generate_and_check(home: Path, timeout_s: float, device: str | None) -> tuple[str, str, tuple[int, int], float]:
    """Generate, check and save one picture; returns its device, dtype, size and when the first preview came
    (``time.perf_counter()``). Raises SelfTestFailure."""
    import numpy as np

    from . import paths
    from .engine import Engine, EngineOptions, PreviewOptions
    from .errors import DarkroomError
    from .events import Cancelled, Failed, Finished, ImageReady, Preview
    from .gallery import Gallery, MetadataError, read_parameters
    from .models import DEFAULT_BUNDLED, native_size
    from .request import build_request

    bundled = paths.BUNDLED_MODELS / DEFAULT_BUNDLED
    if not (bundled / "model_index.json").is_file():
        raise SelfTestFailure(f"the bundled model is missing (looked in {bundled})")
    width, height = native_size(DEFAULT_BUNDLED)
    request = build_request(prompt=PROMPT, seed=SEED, steps=STEPS, model=DEFAULT_BUNDLED, width=width,
                            height=height).request

    events: list = []
    done = threading.Event()
    first_preview_at: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, Preview) and not first_preview_at:
            first_preview_at.append(time.perf_counter())
        events.append(event)
        if isinstance(event, (Finished, Failed, Cancelled)):
            done.set()

    gallery = Gallery(home / "gallery", home / "index.sqlite")
    engine = Engine(on_event, EngineOptions(device=device, preview=PreviewOptions(mode="x0", interval_s=0.0)))
    try:
        engine.submit(request)
        if not done.wait(timeout_s):
            raise SelfTestFailure(f"no picture after {timeout_s:.0f} s")
        failed = next((e for e in events if isinstance(e, Failed)), None)
        if failed is not None:
            log.error("self-test generation failed: %s\n%s", failed.message, failed.details)
            raise SelfTestFailure(f"generation failed: {failed.message}")
        if any(isinstance(e, Cancelled) for e in events):
            raise SelfTestFailure("the generation was cancelled")
        images = [e for e in events if isinstance(e, ImageReady)]
        if len(images) != 1:
            raise SelfTestFailure(f"expected one picture, the engine sent {len(images)}")
        if not any(isinstance(e, Preview) for e in events):
            raise SelfTestFailure("the engine sent no live preview")
        ready = images[0]
        pixels = np.asarray(ready.image)
        if pixels.shape != (height, width, 3) or pixels.dtype != np.uint8:
            raise SelfTestFailure(f"the picture is {pixels.dtype} {pixels.shape}, expected uint8 {(height, width, 3)}")
        if float(pixels.std()) < MIN_PIXEL_STD:
            raise SelfTestFailure(f"the picture is blank (one flat colour, mean {pixels.mean():.0f}): the model "
                                  "computed NaN or nothing")
        try:
            saved = gallery.save(ready)
        except DarkroomError as exc:
            raise SelfTestFailure(f"saving into the gallery failed: {exc.message}") from None
        _check_saved_file(saved.path, pixels)
        try:
            params = read_parameters(saved.path)
        except MetadataError as exc:
            raise SelfTestFailure(f"the saved picture's metadata does not read back: {exc.message}") from None
        if params.fields.get("prompt") != PROMPT or params.fields.get("seed") != SEED:
            raise SelfTestFailure(f"the metadata reads back wrong: prompt {params.fields.get('prompt')!r}, "
                                  f"seed {params.fields.get('seed')!r}")
        if gallery.record_for_path(saved.path) is None:
            raise SelfTestFailure("the gallery did not index the saved picture")
        return ready.device, ready.dtype, (width, height), first_preview_at[0]
    finally:
        engine.shutdown(timeout=10.0)
        gallery.close()


def _check_saved_file(path: Path, pixels) -> None:
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        stored = np.asarray(img.convert("RGB"))
    if stored.shape != pixels.shape or not np.array_equal(stored, pixels):
        raise SelfTestFailure(f"the PNG written to the gallery does not hold the picture's pixels ({path.name})")


def main(argv: list[str] | None = None) -> int:
    """``darkroom --self-test [--device cpu|cuda|mps]``: print the verdict line, return 0 (OK) or 1."""
    import argparse

    parser = argparse.ArgumentParser(prog="darkroom --self-test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "mps", "cpu"), default=None, help="force a device")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for the picture")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="darkroom: %(levelname)s %(name)s: %(message)s")
    report = run(args.timeout, args.device)
    line = report.line()
    log.info("%s", line)
    if sys.stdout is not None:
        print(line, flush=True)
    else:  # a windowed bundle on Windows has no console: the verdict goes beside the log
        from . import paths

        try:
            paths.log_dir().mkdir(parents=True, exist_ok=True)
            (paths.log_dir() / "self-test.txt").write_text(line + "\n", encoding="utf-8")
        except OSError:
            pass
    return 0 if report.ok else 1
