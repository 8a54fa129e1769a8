"""The gallery: finished images saved as PNG files with their parameters, and an SQLite index to find them.

- :mod:`.infotext`: AUTOMATIC1111's ``parameters`` text (write and read).
- :mod:`.metadata`: Darkroom's JSON chunk and reading anyone's parameters from a PNG (A1111, Fooocus, ComfyUI,
  InvokeAI), safely.
- :mod:`.store`: file names and atomic writes.
- :mod:`.index`: the SQLite index (WAL, schema migrations, FTS5 search).
- :mod:`.thumbnails`: the on-disk thumbnail cache.
- :mod:`.gallery`: the :class:`Gallery` facade the app and the command line use.
- :mod:`.cli`: ``darkroom gallery …``.

No Qt here; importing this package does not import torch.
"""

from .gallery import DeleteResult, Gallery, RescanResult, SavedImage, default_index_path
from .index import GridEntry, ImageRecord
from .metadata import ImageParameters, MetadataError, read_parameters

__all__ = [
    "Gallery",
    "SavedImage",
    "RescanResult",
    "DeleteResult",
    "ImageRecord",
    "GridEntry",
    "ImageParameters",
    "MetadataError",
    "read_parameters",
    "default_index_path",
]
