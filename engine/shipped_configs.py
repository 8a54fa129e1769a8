"""Configurations that ship with Darkroom, so a single ``.safetensors`` checkpoint loads with no download.

A single file holds weights only; diffusers needs its family's configuration beside it (JSON for each part,
tokenizer files). ``resources/configs/<owner>--<name>/`` holds the JSON of the reference repository each family
names (:data:`engine.families.sd.CONFIG_SD1` …): SD 1.x, SD 2.x, SDXL, SD3 medium, SD3.5 medium and large, Flux.1
dev and schnell. ``clip-bpe-merges.txt.gz`` is the CLIP tokenizer's byte-pair merges (OpenAI CLIP, MIT licence),
from which every CLIP tokenizer's ``vocab.json`` and ``merges.txt`` are built the way CLIP builds them, and
``t5-tokenizer.json.gz`` T5's SentencePiece vocabulary in the ``tokenizers`` format (Google's T5, Apache-2.0). A
configuration is put together once in Darkroom's cache folder and used from there.

A configuration has no weights: an SD3 or Flux file that holds only its transformer still needs the other parts
from a full download (:mod:`engine.single_file` says which).

Any thread; file reads and writes only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from . import paths
from .clip_bpe import clip_vocabulary

log = logging.getLogger(__name__)

SHIPPED_DIR = paths.RESOURCES / "configs"
BPE_FILE = "clip-bpe-merges.txt.gz"
T5_FILE = "t5-tokenizer.json.gz"
_STAMP = ".darkroom-config"


def folder_name(repo: str) -> str:
    return repo.replace("/", "--")


def shipped_repos() -> list[str]:
    """Repositories whose configuration ships with Darkroom."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(d.name.replace("--", "/", 1) for d in SHIPPED_DIR.iterdir() if (d / "model_index.json").is_file())


def shipped_config(repo: str) -> Path | None:
    """A complete configuration folder for ``repo`` built from the shipped files, or None when none ships. Built
    in the cache folder on first use, and again whenever the shipped files change."""
    source = SHIPPED_DIR / folder_name(repo)
    if not (source / "model_index.json").is_file():
        return None
    target = paths.cache_dir() / "configs" / folder_name(repo)
    stamp = _fingerprint(source)
    if _stamp_of(target) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(source, build, dirs_exist_ok=True)
        for tokenizer in build.glob("tokenizer*/tokenizer_config.json"):
            _write_vocabulary(tokenizer.parent, json.loads(tokenizer.read_text(encoding="utf-8"))["tokenizer_class"])
        (build / _STAMP).write_text(stamp, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(build, target)
    except OSError:
        if _stamp_of(target) == stamp:  # another Darkroom process built it at the same moment
            return target
        raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("built the shipped configuration of %s in %s", repo, target)
    return target


def _write_vocabulary(folder: Path, tokenizer_class: str) -> None:
    if tokenizer_class == "T5Tokenizer":
        (folder / "tokenizer.json").write_bytes(gzip.decompress((SHIPPED_DIR / T5_FILE).read_bytes()))
        return
    vocab, merges = clip_vocabulary(SHIPPED_DIR / BPE_FILE)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def _stamp_of(folder: Path) -> str | None:
    try:
        return (folder / _STAMP).read_text(encoding="utf-8")
    except OSError:
        return None


def _fingerprint(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([*source.rglob("*.json"), SHIPPED_DIR / BPE_FILE, SHIPPED_DIR / T5_FILE]):
        digest.update(str(path.relative_to(SHIPPED_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
