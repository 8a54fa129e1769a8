"""Reuse parameters from any image: a PNG dropped on the window or chosen with File → Open parameters.

:func:`open_parameters` reads Darkroom's own chunk, A1111/Forge/Fooocus ``parameters``, InvokeAI's metadata or a
ComfyUI graph and returns what the form needs, with a message in plain words either way. It never raises for a
bad file. :func:`image_paths_from_mime` picks the local files out of a drag-and-drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData

from engine.errors import DarkroomError
from engine.gallery.metadata import ImageParameters, MetadataError, read_parameters
from engine.request import GenerationRequest

#: File name filter for an "Open parameters" dialog.
FILE_FILTER = "PNG images (*.png);;All files (*)"


@dataclass(frozen=True)
class OpenedParameters:
    """The outcome of reading an image's parameters.

    ``request`` is a complete, valid request (the image's values over the defaults; a missing seed becomes a
    random one) or None when nothing usable was found. ``fields`` holds only what the image itself records, for a
    form that wants to change only those. ``message`` is for the user in both cases.
    """

    request: GenerationRequest | None
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    warnings: tuple[str, ...] = ()
    parameters: ImageParameters | None = None

    @property
    def ok(self) -> bool:
        return self.request is not None


def open_parameters(path: str | Path) -> OpenedParameters:
    path = Path(path)
    name = path.name or str(path)
    try:
        params = read_parameters(path)
        built = params.build()
    except MetadataError as exc:
        if exc.code == "no_parameters":
            return OpenedParameters(None, f"{name} holds no generation parameters.")
        if exc.code == "not_png":
            return OpenedParameters(None, f"{name} is not a PNG image, so it holds no parameters Darkroom can read.")
        return OpenedParameters(None, f"{name}: {exc.message}")
    except DarkroomError as exc:
        return OpenedParameters(None, f"{name}: {exc.message}")
    except ValueError as exc:  # a validation error that slipped through: still a message, never a crash
        return OpenedParameters(None, f"The parameters in {name} cannot be used: {exc}")
    notes = list(params.warnings) + list(built.notices)
    if "seed" not in params.fields:
        notes.append("The image holds no seed; a random one will be used.")
    message = f"Parameters read from {name} ({params.source_label})."
    if notes:
        message += " " + " ".join(notes[:4]) + (f" (and {len(notes) - 4} more notes)" if len(notes) > 4 else "")
    return OpenedParameters(
        built.request, message, dict(params.fields), params.source, tuple(notes), params
    )


def image_paths_from_mime(mime: QMimeData) -> list[Path]:
    """Local files in a drag-and-drop (for the main window's dragEnterEvent/dropEvent)."""
    if mime is None or not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]
