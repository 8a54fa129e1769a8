"""Shared helpers for the gallery tests: fake finished images and PNGs from other tools.

(The per-test portable ``DARKROOM_HOME`` comes from ``tests/conftest.py``.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from engine.events import ImageReady
from engine.request import GenerationRequest, build_request


@pytest.fixture
def gallery(darkroom_home):
    """A Gallery in the test's portable home (default folders)."""
    from engine.gallery import Gallery

    g = Gallery()
    yield g
    g.close()


def make_request(**overrides) -> GenerationRequest:
    values = dict(prompt="a lighthouse in a storm, oil painting", negative_prompt="blurry", seed=1234, steps=20,
                  cfg=7.5, width=512, height=768, sampler="DPM++ 2M Karras", model="")
    values.update(overrides)
    return build_request(**values).request


def make_ready(request: GenerationRequest | None = None, size: tuple[int, int] = (24, 16), job_id: int = 1,
               model_name: str = "tiny-sd", model_hash: str = "0123abcd", **overrides) -> ImageReady:
    """A finished image as the engine would send it: a fresh, read-only uint8 H×W×3 array."""
    request = request or make_request(**overrides)
    h, w = size
    rng = np.random.default_rng(request.seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    image.flags.writeable = False
    return ImageReady(job_id=job_id, image=image, request=request, image_index=0, image_count=1,
                      model_name=model_name, model_hash=model_hash, device="cpu", dtype="float32", seconds=0.5)


def png_with_text(chunks: dict[str, str] | list[tuple[bytes, bytes]], size: tuple[int, int] = (8, 8)) -> bytes:
    """A small valid PNG with the given text chunks (dict: written by Pillow; list: raw (type, data) chunks)."""
    from PIL import Image, PngImagePlugin

    img = Image.new("RGB", size, (10, 20, 30))
    if isinstance(chunks, dict):
        info = PngImagePlugin.PngInfo()
        for k, v in chunks.items():
            info.add_text(k, v)
        buf = io.BytesIO()
        img.save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    iend = data.rindex(b"IEND") - 4
    extra = b"".join(raw_chunk(t, d) for t, d in chunks)
    return data[:iend] + extra + data[iend:]


def raw_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def comfy_graph() -> dict:
    """A typical ComfyUI API graph (text-to-image), as ComfyUI writes it into the ``prompt`` chunk."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 640, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery nature glass bottle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def invoke_metadata() -> dict:
    return {
        "generation_mode": "txt2img", "positive_prompt": "a red fox in the snow", "negative_prompt": "lowres",
        "width": 768, "height": 512, "seed": 3015486352, "rand_device": "cpu", "cfg_scale": 6.5, "steps": 30,
        "scheduler": "dpmpp_2m_k", "model": {"name": "Dreamshaper 8", "base": "sd-1", "hash": "blake3:abc"},
        "app_version": "4.2.4",
    }


def dump(data) -> str:
    return json.dumps(data)


@contextlib.contextmanager
def deadline(seconds: int = 10) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking call (such as opening a FIFO) in the main thread."""

    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> Path:
    """A FIFO (named pipe) at ``path``: opening it for reading blocks until a writer comes, which none will."""
    os.mkfifo(path)
    return path
