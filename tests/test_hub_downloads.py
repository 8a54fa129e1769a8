"""Downloads against a fake Hub on localhost: only the files the pipeline needs, progress, cancel and resume,
a lost connection, and a model listed only once every file is in."""

from __future__ import annotations

import threading

import pytest

from engine import hub
from engine.errors import DarkroomError, OfflineError
from engine.hub import DownloadCancelled, HubFile, choose_files
from tests.fake_hub import serving

BIG = bytes(range(256)) * 4096  # 1 MiB
SD_REPO = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
    "v1-5-pruned.safetensors": b"root checkpoint, never fetched",
    "v1-5-pruned.ckpt": b"pickle, never fetched",
    "unet/config.json": b"{}",
    "unet/diffusion_pytorch_model.safetensors": BIG,
    "unet/diffusion_pytorch_model.fp16.safetensors": BIG[: len(BIG) // 2],
    "unet/diffusion_pytorch_model.bin": b"pickle, never fetched",
    "vae/config.json": b"{}",
    "vae/diffusion_pytorch_model.safetensors": b"vae weights",
    "text_encoder/config.json": b"{}",
    "text_encoder/model.fp16.safetensors": b"te fp16",
    "tokenizer/vocab.json": b"{}",
    "tokenizer/merges.txt": b"#",
    "safety_checker/config.json": b"{}",
    "safety_checker/model.safetensors": b"not needed",
    "README.md": b"# model card",
}


def _files(repo: dict[str, bytes]) -> list[HubFile]:
    return [HubFile(name, len(data)) for name, data in repo.items()]


def test_only_what_the_pipeline_needs_in_one_precision():
    full = {f.path for f in choose_files(_files(SD_REPO))}
    assert full == {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                    "text_encoder/model.fp16.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt"}
    half = {f.path for f in choose_files(_files(SD_REPO), variant="fp16")}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in half
    assert "unet/diffusion_pytorch_model.safetensors" not in half
    configs = {f.path for f in choose_files(_files(SD_REPO), config_only=True)}
    assert configs and all(p.endswith((".json", ".txt")) for p in configs)


def test_a_repository_of_checkpoints_asks_which_one():
    files = [HubFile("a.safetensors", 3), HubFile("b.safetensors", 3), HubFile("README.md", 1)]
    with pytest.raises(DarkroomError, match="--file"):
        choose_files(files)
    assert [f.path for f in choose_files(files, single_file="b.safetensors")] == ["b.safetensors"]


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    with serving(monkeypatch, tmp_path / "hf-cache", {"someone/tiny-sd": SD_REPO}) as server:
        yield server


def test_download_reports_progress_and_lists_the_model_once_complete(fake_hub):
    seen: list[hub.Progress] = []
    plan = hub.plan("someone/tiny-sd")
    assert plan.total_bytes == sum(len(SD_REPO[f.path]) for f in plan.files)
    folder = hub.fetch(plan, seen.append)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == BIG
    assert not (folder / "v1-5-pruned.safetensors").exists() and not (folder / "safety_checker").exists()
    assert seen[-1].done == seen[-1].total == plan.total_bytes
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:]))
    assert hub.completed() == {"someone/tiny-sd": folder}
    fetched = {p for m, p, _ in fake_hub.requests if m == "GET" and "/resolve/" in p}
    assert not any("pruned" in p or p.endswith(".bin") for p in fetched)


def test_cancel_keeps_nothing_listed_and_the_next_download_resumes(fake_hub):
    cancel = threading.Event()

    def on_progress(p: hub.Progress) -> None:
        if p.file.startswith("unet/diffusion") and p.done > 0 and not cancel.is_set():
            cancel.set()

    fake_hub.cut_after = None
    with pytest.raises(DownloadCancelled, match="resume"):
        hub.download("someone/tiny-sd", on_progress=on_progress, cancel=cancel)
    assert hub.completed() == {}
    before = len(fake_hub.requests)
    folder = hub.download("someone/tiny-sd")
    assert hub.completed() == {"someone/tiny-sd": folder}
    # Files finished before the cancel were not fetched again.
    again = [p for m, p, _ in fake_hub.requests[before:] if m == "GET" and "/resolve/" in p]
    assert not any(p.endswith("model_index.json") for p in again)


def test_a_lost_connection_fails_clearly_and_the_next_download_fetches_only_what_is_missing(fake_hub):
    fake_hub.cut_after = 300_000  # every big file breaks off part way (the Hub library retries, then gives up)
    with pytest.raises(OfflineError, match="cannot be reached"):
        hub.download("someone/tiny-sd")
    assert hub.completed() == {}
    big = "unet/diffusion_pytorch_model.safetensors"
    finished = {p for m, p, _ in fake_hub.requests if m == "GET" and "/resolve/" in p and not p.endswith(big)}
    fake_hub.cut_after = None
    before = len(fake_hub.requests)
    folder = hub.download("someone/tiny-sd")
    assert (folder / big).read_bytes() == BIG
    again = {p for m, p, _ in fake_hub.requests[before:] if m == "GET" and "/resolve/" in p}
    assert finished and not again & finished and any(p.endswith(big) for p in again)


def test_unknown_repository_and_unreachable_hub(fake_hub, monkeypatch):
    import huggingface_hub.constants as constants

    with pytest.raises(DarkroomError, match="no model named"):
        hub.plan("someone/missing")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(OfflineError, match="cannot be reached"):
        hub.download("someone/tiny-sd")
    assert hub.completed() == {}
