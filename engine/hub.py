"""Downloading models from the Hugging Face Hub into the user's models folder — the only code that touches
the network, run only when a person asks for it (``darkroom models download``). Everything else is offline.
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .errors import DarkroomError, ModelNotFoundError, OfflineError

#: Weights in safe formats only; pickle-based files are never fetched.
WEIGHT_PATTERNS = ["*.safetensors"]
CONFIG_PATTERNS = ["*.json", "*.txt", "tokenizer*/*", "*/*.json", "*/*.txt"]


def download(repo_id: str, *, config_only: bool = False, dest: Path | None = None) -> Path:
    """Fetch ``repo_id`` into the models folder (or the Hugging Face cache for config-only fetches)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise DarkroomError("Downloading needs the huggingface_hub package.", str(exc)) from exc

    allow = CONFIG_PATTERNS if config_only else CONFIG_PATTERNS + WEIGHT_PATTERNS
    target = None if config_only else (dest or paths.models_dir() / repo_id.split("/")[-1])
    try:
        folder = snapshot_download(repo_id, allow_patterns=allow, local_dir=str(target) if target else None)
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"The Hugging Face Hub has no model named {repo_id!r} (or it is private).", str(exc)) from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, OSError) as exc:
        raise OfflineError(
            f"Could not download {repo_id}: the Hugging Face Hub cannot be reached. Check the internet connection "
            "(and that HF_HUB_OFFLINE is not set). Models already on disk keep working offline.",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if any(w in text.lower() for w in ("connect", "resolve", "timeout", "network", "offline")):
            raise OfflineError(
                f"Could not download {repo_id}: the Hugging Face Hub cannot be reached. Check the internet "
                "connection. Models already on disk keep working offline.",
                text,
            ) from exc
        raise
    return Path(folder)
