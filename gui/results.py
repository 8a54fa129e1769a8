"""This session's finished pictures, newest first, with a bound on the memory they hold.

A long session makes thousands of pictures; each full image is held twice (the engine's array for saving, the
``QImage`` for painting), 6 MB at 1024². :class:`ResultStore` keeps full images (and their replay frames, 2.5 MB
for 50 steps at 1024²) for the newest :data:`KEEP_IMAGES` results only; older ones keep a thumbnail and their recipe (their file, when the gallery saved
them, still holds the full picture), and beyond :data:`KEEP_ENTRIES` the oldest entries are dropped.

GUI thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from engine.events import ImageReady
from engine.request import GenerationRequest

THUMB = 96
#: Results whose full image stays in memory.
KEEP_IMAGES = 24
#: Results listed at all (as thumbnails).
KEEP_ENTRIES = 500

ResultKey = tuple[int, int]  # (job id, image index)


def thumbnail_of(image: QImage, size: int = THUMB) -> QImage:
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


@dataclass(eq=False)
class Result:
    """A finished picture of this session. ``ready`` and ``image`` are None once the store has let the full image
    go (:attr:`trimmed`); the recipe and the thumbnail stay."""

    key: ResultKey
    request: GenerationRequest
    thumbnail: QImage
    ready: ImageReady | None
    image: QImage | None
    model_name: str = ""
    seconds: float = 0.0
    device: str = ""
    saved_path: str | None = None
    save_error: str | None = None
    kind: str = ""  # the job's kind (gui.viewmodel.JobKind): "", "live" (until kept) or "grid"

    @classmethod
    def from_ready(cls, ready: ImageReady, image: QImage, kind: str = "") -> "Result":
        return cls((ready.job_id, ready.image_index), ready.request, thumbnail_of(image), ready, image,
                   ready.model_name, ready.seconds, ready.device, kind=kind)

    @property
    def replay(self) -> tuple[np.ndarray, ...]:
        """The model's guess (x0) at every step, small frames in step order (:mod:`engine.replay`); kept as long as
        the full image is (empty once trimmed, or when the job did not record them)."""
        return self.ready.replay if self.ready is not None else ()

    def set_decoded_replay(self, frames: tuple[np.ndarray, ...]) -> bool:
        """Take the VAE-decoded frames of this picture's replay (``ReplayDecoded``) in place of the linear map's.
        False when there is nothing to replace: the full image was let go, or the frames do not match."""
        ready = self.ready
        if ready is None or len(frames) != len(ready.replay) or not frames:
            return False
        self.ready = replace(ready, replay=tuple(frames), replay_decoded=True)
        return True

    @property
    def trimmed(self) -> bool:
        return self.image is None

    def full_image(self) -> QImage:
        """The full picture: in memory, else read back from its saved file, else the thumbnail."""
        if self.image is not None:
            return self.image
        if self.saved_path:
            image = QImage(self.saved_path)
            if not image.isNull():
                return image
        return self.thumbnail

    def describe(self) -> str:
        r = self.request
        prompt = r.prompt if len(r.prompt) <= 80 else r.prompt[:77] + "…"
        lines = [
            prompt or "(no prompt)",
            f"Seed {r.seed} · {r.steps} steps · {r.sampler} · CFG {r.cfg:g} · {r.width}×{r.height}",
        ]
        if self.model_name:
            lines.append(f"Model {self.model_name}")
        if self.seconds:
            lines.append(f"Made in {self.seconds:.1f} s on {self.device or 'unknown device'}")
        if self.saved_path:
            lines.append(f"Saved as {self.saved_path}")
        elif self.save_error:
            lines.append(f"Not saved: {self.save_error}")
        if self.trimmed:
            lines.append("Older picture: only " + ("its saved file" if self.saved_path else "a thumbnail") + " is kept.")
        return "\n".join(lines)

    @property
    def saved_name(self) -> str:
        return Path(self.saved_path).name if self.saved_path else ""


class ResultStore(QObject):
    """The session's results, newest first. Signals say what changed so a view can follow without rebuilding."""

    #: a new result (it is first now)
    added = Signal(object)
    #: a result's saved path, save error or image changed (e.g. trimmed to a thumbnail)
    changed = Signal(object)
    #: results dropped from the session, oldest last
    removed = Signal(list)

    def __init__(self, keep_images: int = KEEP_IMAGES, keep_entries: int = KEEP_ENTRIES, parent: QObject | None = None):
        super().__init__(parent)
        if keep_images < 1 or keep_entries < keep_images:
            raise ValueError("keep_images must be at least 1 and keep_entries at least keep_images")
        self._keep_images = keep_images
        self._keep_entries = keep_entries
        self._results: list[Result] = []  # newest first
        self._by_key: dict[ResultKey, Result] = {}

    def add(self, result: Result) -> None:
        self._results.insert(0, result)
        self._by_key[result.key] = result
        self.added.emit(result)
        if len(self._results) > self._keep_images:
            older = self._results[self._keep_images]
            if not older.trimmed:
                older.ready = None
                older.image = None
                self.changed.emit(older)
        if len(self._results) > self._keep_entries:
            dropped = self._results[self._keep_entries:]
            del self._results[self._keep_entries:]
            for r in dropped:
                del self._by_key[r.key]
            self.removed.emit(dropped)

    def results(self) -> list[Result]:
        """Newest first."""
        return list(self._results)

    def get(self, key: ResultKey) -> Result | None:
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._results)

    def set_saved(self, key: ResultKey, path: str) -> Result | None:
        result = self._by_key.get(key)
        if result is not None:
            result.saved_path, result.save_error = path, None
            self.changed.emit(result)
        return result

    def set_save_error(self, key: ResultKey, message: str) -> Result | None:
        result = self._by_key.get(key)
        if result is not None:
            result.save_error = message
            self.changed.emit(result)
        return result
