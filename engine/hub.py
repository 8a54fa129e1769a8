"""Downloading models from the Hugging Face Hub — the only code that touches the network, run only when a
person asks for it (``darkroom models download`` or the Models window). Everything else is offline.

A download is planned first (:func:`plan`: one request for the repository's file list), fetching only what the
pipeline needs: configuration and tokenizer files, and for each component one ``.safetensors`` weight file in
one precision variant (never pickle formats, never the root-level single-file checkpoints a diffusers repository
often carries as well, never the safety checker Darkroom does not run). :func:`fetch` then downloads the files
into the standard Hugging Face cache, reporting bytes, speed and time left, and stops at once when cancelled; an
interrupted file resumes where it stopped next time. A model counts as downloaded only once every file of its
plan is in (:func:`completed`), so a half-downloaded model never shows up in the model menu.

Any thread: the Models window runs :func:`fetch` on a worker thread and cancels it with an event.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from . import paths
from .errors import DarkroomError, ErrorKind, ModelNotFoundError, OfflineError

CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, CLIP vocab and merges, sentencepiece models (T5)
VARIANTS = ("fp16", "bf16")
#: Components Darkroom never loads.
SKIPPED_COMPONENTS = ("safety_checker",)
_WEIGHT = re.compile(r"^(?P<base>[^.]+?)(?:\.(?P<variant>[a-z0-9_]+))?(?P<shard>-\d{5}-of-\d{5})?\.safetensors$")
_RECORD = "downloads.json"


class DownloadCancelled(DarkroomError):
    kind = ErrorKind.CANCELLED


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hugging Face model id, else a :class:`DarkroomError` (validation) in one line.

    Checked before anything touches the network or the disk: the id also names folders, so ``..`` or a path must
    never get that far."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if not isinstance(repo_id, str) or repo_id.count("/") != 1:
            raise HFValidationError("a model id is owner/name")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        shown = repr(str(repo_id)[:100]).encode("ascii", "backslashreplace").decode("ascii")
        raise DarkroomError(
            f"{shown} is not a Hugging Face model id: use owner/name (letters, digits, '-', '_' and '.', not "
            "starting or ending with '-' or '.'), e.g. stable-diffusion-v1-5/stable-diffusion-v1-5.",
            str(exc),
            kind=ErrorKind.VALIDATION,
        ) from None
    return repo_id


@dataclass(frozen=True)
class HubFile:
    path: str  # inside the repository, "/"-separated
    size: int


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    revision: str  # the commit the files are taken from
    files: tuple[HubFile, ...]
    config_only: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Progress:
    """How a download is going: bytes so far of the total, the current file, speed and time left."""

    done: int
    total: int
    file: str
    bytes_per_s: float

    @property
    def eta_s(self) -> float:
        return (self.total - self.done) / self.bytes_per_s if self.bytes_per_s > 0 else float("inf")


def choose_files(files: Iterable[HubFile], *, config_only: bool = False, variant: str | None = None,
                 single_file: str | None = None) -> list[HubFile]:
    """The files a download fetches out of a repository's ``files``. Pure; raises DarkroomError when a
    repository without ``model_index.json`` holds no single checkpoint to choose (or several, and none named)."""
    files = list(files)
    names = {f.path for f in files}
    configs = [f for f in files if PurePosixPath(f.path).suffix.lower() in CONFIG_SUFFIXES
               and PurePosixPath(f.path).parts[0] not in SKIPPED_COMPONENTS]
    if config_only:
        return configs
    if "model_index.json" not in names:
        checkpoints = [f for f in files if "/" not in f.path and f.path.lower().endswith(".safetensors")]
        if single_file is not None:
            checkpoints = [f for f in checkpoints if f.path == single_file]
        if len(checkpoints) != 1:
            listed = ", ".join(f.path for f in checkpoints[:6]) or "none in .safetensors"
            raise DarkroomError(
                "This repository is not a diffusers model folder; choose one of its checkpoints with --file "
                f"({listed}).", kind=ErrorKind.VALIDATION)
        return checkpoints
    # Per component folder and weight name, the files of one precision: the one asked for where it exists, else
    # the full-precision files, else whatever variant there is.
    groups: dict[tuple[str, str], dict[str | None, list[HubFile]]] = {}
    for f in files:
        p = PurePosixPath(f.path)
        match = _WEIGHT.match(p.name)
        if len(p.parts) != 2 or match is None or p.parts[0] in SKIPPED_COMPONENTS:
            continue
        groups.setdefault((p.parts[0], match["base"]), {}).setdefault(match["variant"], []).append(f)
    weights = []
    for by_variant in groups.values():
        for pick in (variant, None, *sorted(k for k in by_variant if k)):
            if pick in by_variant:
                weights.extend(sorted(by_variant[pick], key=lambda f: f.path))
                break
    return configs + weights


def plan(repo_id: str, *, config_only: bool = False, variant: str | None = None,
         single_file: str | None = None) -> DownloadPlan:
    """Ask the Hub for ``repo_id``'s files and choose what to fetch. Raises DarkroomError: an invalid id (before
    any network access), a repository that does not exist, the Hub out of reach."""
    check_repo_id(repo_id)
    if variant is not None and variant not in VARIANTS:
        raise DarkroomError(f"The precision variant must be one of {', '.join(VARIANTS)}.", kind=ErrorKind.VALIDATION)
    from huggingface_hub import HfApi

    with _hub_errors(repo_id):
        info = HfApi().model_info(repo_id, files_metadata=True)
    files = [HubFile(s.rfilename, int(s.size or 0)) for s in (info.siblings or [])]
    chosen = choose_files(files, config_only=config_only, variant=variant, single_file=single_file)
    return DownloadPlan(repo_id, info.sha or "main", tuple(chosen), config_only)


def fetch(download: DownloadPlan, on_progress: Callable[[Progress], None] | None = None,
          cancel: threading.Event | None = None) -> Path:
    """Download the plan's files into the Hugging Face cache and return the snapshot folder. Raises
    DownloadCancelled (the files finished so far stay; the one in progress resumes next time) and DarkroomError
    when the Hub cannot be reached."""
    from huggingface_hub import hf_hub_download
    from tqdm.auto import tqdm

    cancel = cancel or threading.Event()
    started = time.monotonic()
    state = {"done": 0, "file": "", "fresh": 0}

    def report(n: int) -> None:
        if cancel.is_set():
            raise DownloadCancelled(f"The download of {download.repo_id} was cancelled; start it again to resume.")
        state["done"] += n
        state["fresh"] += max(0, n)
        if on_progress is not None:
            elapsed = max(1e-6, time.monotonic() - started)
            on_progress(Progress(state["done"], download.total_bytes, state["file"], state["fresh"] / elapsed))

    class Bar(tqdm):  # hf_hub_download's progress bar: counts bytes and is where a download stops when cancelled
        monitor_interval = 0  # no monitor thread

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            # A resumed file starts with what is already on disk.
            report(int(kwargs.get("initial") or 0))

        def update(self, n=1):
            report(int(n or 0))

    folder = None
    finished = 0  # bytes of the files done, whatever the progress bars counted
    for f in download.files:
        state["file"] = f.path
        report(0)
        with _hub_errors(download.repo_id):
            path = hf_hub_download(download.repo_id, f.path, revision=download.revision, tqdm_class=Bar)
        folder = Path(path).parents[len(PurePosixPath(f.path).parts) - 1]
        finished += f.size
        state["done"] = finished
        report(0)
    if folder is None:
        raise DarkroomError(f"{download.repo_id} has no files Darkroom can use.", kind=ErrorKind.VALIDATION)
    if not download.config_only:
        _record(download, folder)
    return folder


def download(repo_id: str, *, config_only: bool = False, variant: str | None = None, single_file: str | None = None,
             on_progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None) -> Path:
    """:func:`plan` and :func:`fetch` in one call."""
    return fetch(plan(repo_id, config_only=config_only, variant=variant, single_file=single_file), on_progress, cancel)


# -- what has been downloaded completely ------------------------------------------------------------------------------
def _record(download: DownloadPlan, folder: Path) -> None:
    from .gallery.store import write_file_replacing

    done = {k: v for k, v in _records().items() if Path(v).is_dir()}
    done[download.repo_id] = str(folder)
    target = paths.data_dir() / _RECORD
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_replacing(target, json.dumps(done, indent=1).encode("utf-8"))


def _records() -> dict[str, str]:
    try:
        data = json.loads((paths.data_dir() / _RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def completed() -> dict[str, Path]:
    """Models downloaded completely: repository id → its snapshot folder in the cache (still on disk)."""
    return {k: Path(v) for k, v in _records().items() if (Path(v) / "model_index.json").is_file()
            or any(Path(v).glob("*.safetensors"))}


def forget(repo_id: str) -> None:
    """Stop listing a downloaded model (its files stay in the shared Hugging Face cache)."""
    from .gallery.store import write_file_replacing

    done = _records()
    if done.pop(repo_id, None) is not None:
        write_file_replacing(paths.data_dir() / _RECORD, json.dumps(done, indent=1).encode("utf-8"))


class _hub_errors:
    """Turns the Hub library's exceptions into messages for people."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, DarkroomError):
            return False
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, GatedRepoError):
            raise DarkroomError(f"{self.repo_id} needs you to accept its licence on huggingface.co and log in "
                                "(huggingface-cli login) before it can be downloaded.", text) from exc
        if isinstance(exc, RepositoryNotFoundError):
            raise ModelNotFoundError(f"The Hugging Face Hub has no model named {self.repo_id!r} (or it is private).",
                                     text) from exc
        offline = isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError, OSError)) or any(
            w in text.lower() for w in ("connect", "resolve", "timeout", "network", "offline"))
        if offline:
            raise OfflineError(
                f"Could not download {self.repo_id}: the Hugging Face Hub cannot be reached. Check the internet "
                "connection (and that HF_HUB_OFFLINE is not set). Models already on disk keep working offline.",
                text) from exc
        return False
