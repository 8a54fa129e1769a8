"""Downloading models from the Hugging Face Hub into the user's models folder — the only code that touches
the network, run only when a person asks for it (``darkroom models download``). Everything else is offline.
"""

from __future__ import annotations

from pathlib import Path

from . import paths
from .errors import DarkroomError, ErrorKind, ModelNotFoundError, OfflineError

#: Weights in safe formats only; pickle-based files are never fetched.
WEIGHT_PATTERNS = ["*.safetensors"]
CONFIG_PATTERNS = ["*.json", "*.txt", "tokenizer*/*", "*/*.json", "*/*.txt"]


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hugging Face model id, else a :class:`DarkroomError` (validation) in one line.

    Checked before anything touches the network or the disk: the id also names the folder the model lands in,
    so ``..`` or a path must never get that far."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        shown = repr(repo_id[:100]).encode("ascii", "backslashreplace").decode("ascii")
        raise DarkroomError(
            f"{shown} is not a Hugging Face model id: use owner/name (letters, digits, '-', '_' and '.', not "
            "starting or ending with '-' or '.'), e.g. stable-diffusion-v1-5/stable-diffusion-v1-5.",
            str(exc),
            kind=ErrorKind.VALIDATION,
        ) from None
    return repo_id


def download(repo_id: str, *, config_only: bool = False, dest: Path | None = None) -> Path:
    """Fetch ``repo_id`` into the models folder (or the Hugging Face cache for config-only fetches). Raises
    :class:`DarkroomError` for an invalid id (before any network access) and when the download fails."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    check_repo_id(repo_id)
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
