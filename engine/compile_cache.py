"""Where the GPU fast path keeps compiled artefacts between launches, and what it remembers about them.

Inductor's FX-graph, AOT-autograd and Triton caches live under ``engine.paths.cache_dir()/"inductor"``
(``DARKROOM_COMPILE_CACHE`` overrides it; a ``TORCHINDUCTOR_CACHE_DIR`` the user set is respected), beside a
small manifest recording, per shape key, whether its compile succeeded or failed. Safe on any thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from . import paths

log = logging.getLogger(__name__)

MANIFEST_NAME = "darkroom-fastpath.json"
CACHE_ENV = "DARKROOM_COMPILE_CACHE"

_cache_lock = threading.Lock()
_cache_root: Path | None = None


def compile_cache_dir() -> Path:
    """Where compiled artefacts are kept between launches."""
    override = os.environ.get(CACHE_ENV, "").strip()
    return Path(override).expanduser() if override else paths.cache_dir() / "inductor"


def configure_compile_cache(root: Path | None = None) -> Path:
    """Point inductor's on-disk caches (FX graphs, AOT autograd, Triton kernels) at ``root``. Process-wide and
    idempotent: the first call wins, because inductor reads the folder once it starts compiling. A folder the
    user chose with ``TORCHINDUCTOR_CACHE_DIR`` is respected."""
    global _cache_root
    with _cache_lock:
        if _cache_root is not None:
            return _cache_root
        root = Path(root or compile_cache_dir())
        root.mkdir(parents=True, exist_ok=True)
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root)
        else:
            root = Path(current)
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        inductor_config.autotune_local_cache = True
        functorch_config.enable_autograd_cache = True
        _cache_root = root
        log.info("compiled denoisers are cached in %s", root)
        return root


class Manifest:
    """Remembers, across launches, how each shape's compile went (``ok`` with its time, or ``failed``)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {"entries": {}}
        except (OSError, ValueError):
            return {"entries": {}}

    def get(self, key: str) -> dict | None:
        with self._lock:
            entry = self._read()["entries"].get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, **values: Any) -> None:
        with self._lock:
            data = self._read()
            data["version"] = 1
            data["entries"][key] = {**values, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:
                log.warning("could not write %s", self.path)
