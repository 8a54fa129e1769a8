"""The model library: family, precision and size read from headers; adding, removing and downloading models
from the command line (a fake Hub on localhost; no network)."""

from __future__ import annotations

import pytest

from engine import library
from engine.cli import main
from engine.models import available_models
from tests.fake_hub import repo_of, serving


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_library_reads_family_precision_and_size_from_headers(tiny_model_dir, tmp_path):
    from tests.ldm_checkpoint import export_single_file

    single = export_single_file(tiny_model_dir, tmp_path / "tiny.safetensors")
    described = library.describe(next(e for e in available_models((str(single),)) if e.path == single))
    assert described.family == "Stable Diffusion 1.x/2.x" and described.size_bytes == single.stat().st_size
    entry = library.describe(next(e for e in available_models((str(tiny_model_dir),)) if e.path == tiny_model_dir))
    assert entry.family == "Stable Diffusion 1.x/2.x" and entry.precision == "fp32"
    assert entry.size_bytes == sum(p.stat().st_size for p in tiny_model_dir.rglob("*") if p.is_file())
    bundled = library.library()[0]
    assert bundled.source == "bundled" and bundled.precision == "fp16" and bundled.family != "unknown"


def test_a_damaged_file_is_listed_as_unknown_not_an_error(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\xff" * 64)
    entry = library.describe(next(e for e in available_models((str(bad),)) if e.path == bad))
    assert (entry.family, entry.precision) == ("unknown", "unknown")


def test_add_list_and_remove_from_the_command_line(capsys, tiny_model_dir, tmp_path):
    code, out, _ = _run(capsys, "models", "add", str(tiny_model_dir))
    assert code == 0 and out.strip() == str(tiny_model_dir.resolve())
    code, out, _ = _run(capsys, "models", "list")
    line = next(line for line in out.splitlines() if line.startswith(tiny_model_dir.name))
    assert "Stable Diffusion" in line and "fp32" in line and "added by path" in line
    code, out, _ = _run(capsys, "models", "remove", tiny_model_dir.name)
    assert code == 0 and "Removed" in out
    assert tiny_model_dir.name not in _run(capsys, "models", "list")[1]

    code, _, err = _run(capsys, "models", "remove", "darkroom-emoji")
    assert code == 2 and "comes with Darkroom" in err and err.count("\n") == 1
    (tmp_path / "evil.ckpt").write_bytes(b"pickle")
    code, _, err = _run(capsys, "models", "add", str(tmp_path / "evil.ckpt"))
    assert code != 0 and "pickle" in err and err.count("\n") == 1


def test_a_downloaded_model_joins_the_library_and_generates(capsys, monkeypatch, tmp_path, tiny_model_dir):
    with serving(monkeypatch, tmp_path / "hf-cache", {"someone/tiny-sd": repo_of(tiny_model_dir)}):
        code, out, err = _run(capsys, "models", "download", "someone/tiny-sd", "--quiet")
    assert code == 0, err
    entry = next(e for e in library.library() if e.name == "tiny-sd")
    assert entry.source == "hub" and entry.family == "Stable Diffusion 1.x/2.x"
    code, out, err = _run(capsys, "generate", "a kite", "--model", "tiny-sd", "--steps", "2", "--size", "64x64",
                          "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.png"))) == 1
    code, out, _ = _run(capsys, "models", "remove", "tiny-sd")
    assert code == 0 and not any(e.name == "tiny-sd" for e in library.library())


@pytest.mark.parametrize("n, text", [(0, "0 B"), (2048, "2 KB"), (5 * 1024 ** 2, "5.0 MB"), (3 * 1024 ** 3, "3.0 GB")])
def test_sizes_read_as_people_write_them(n, text):
    assert library.format_size(n) == text
