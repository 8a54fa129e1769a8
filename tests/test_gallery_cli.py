"""``darkroom gallery list|search|reindex|export|show``."""

from __future__ import annotations

import json

import pytest

from tests.gallery_fixtures import comfy_graph, deadline, fifo, invoke_metadata, make_ready, png_with_text

from engine.gallery import Gallery
from engine.gallery.cli import main


@pytest.fixture
def saved(darkroom_home):
    g = Gallery()
    out = [g.save(make_ready(prompt=p, seed=s)) for p, s in (("a red fox", 11), ("a blue whale", 22), ("red sky", 33))]
    g.set_favourite(out[1].record.id)
    g.close()
    return out


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_search(capsys, saved):
    code, out, err = run(capsys, "gallery", "list")
    assert code == 0 and err == ""
    lines = out.strip().split("\n")
    assert len(lines) == 3
    assert lines[0].split("\t")[3] == "33" and lines[0].endswith("red sky")  # newest first
    code, out, _ = run(capsys, "gallery", "search", "red", "--json")
    records = json.loads(out)
    assert code == 0 and sorted(r["seed"] for r in records) == [11, 33]
    assert records[0]["parameters"]["prompt"] in ("a red fox", "red sky")
    code, out, _ = run(capsys, "gallery", "list", "--favourites")
    assert out.count("\n") == 1 and "a blue whale" in out
    code, out, _ = run(capsys, "gallery", "list", "--oldest", "--limit", "1")
    assert out.strip().endswith("a red fox")


def test_list_sees_files_added_outside(capsys, saved):
    folder = saved[0].path.parent
    (folder / "from-elsewhere.png").write_bytes(png_with_text({"parameters": "a castle\nSteps: 5, Seed: 9, CFG scale: 3"}))
    code, out, _ = run(capsys, "gallery", "search", "castle")
    assert code == 0 and "from-elsewhere.png" in out


def test_reindex(capsys, saved, darkroom_home):
    (darkroom_home / "data" / "gallery.sqlite3").write_bytes(b"garbage" * 50)
    code, out, err = run(capsys, "gallery", "reindex")
    assert code == 0 and "Indexed 3 images" in out
    code, out, _ = run(capsys, "gallery", "list")
    assert out.count("\n") == 3


def test_export(capsys, saved, tmp_path):
    dest = tmp_path / "out"
    code, out, _ = run(capsys, "gallery", "export", str(dest), "--search", "red")
    assert code == 0 and "Exported 2 images" in out
    assert sorted(p.name for p in dest.iterdir()) == sorted(s.path.name for s in (saved[0], saved[2]))
    code, out, err = run(capsys, "gallery", "export", str(dest), "--id", "999")
    assert code == 1 and "999" in err


def test_show_darkroom_image(capsys, saved):
    code, out, err = run(capsys, "gallery", "show", str(saved[0].path))
    data = json.loads(out)
    assert code == 0 and err == ""
    assert data["source"] == "darkroom"
    assert data["parameters"] == {k: v for k, v in saved[0].record.params.items()}
    assert data["parameters"]["seed"] == 11 and data["model_name"] == "tiny-sd"


@pytest.mark.parametrize("chunks, source, prompt", [
    ({"parameters": "castle\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512"}, "a1111", "castle"),
    ({"prompt": json.dumps(comfy_graph())}, "comfyui", "beautiful scenery nature glass bottle"),
    ({"invokeai_metadata": json.dumps(invoke_metadata())}, "invokeai", "a red fox in the snow"),
])
def test_show_other_tools_images(capsys, tmp_path, chunks, source, prompt):
    path = tmp_path / "img.png"
    path.write_bytes(png_with_text(chunks))
    code, out, _ = run(capsys, "gallery", "show", str(path))
    data = json.loads(out)
    assert code == 0 and data["source"] == source and data["parameters"]["prompt"] == prompt


@pytest.mark.parametrize("content, words", [
    (png_with_text({"Software": "paint"}), "no generation parameters"),
    (png_with_text({"darkroom": "{not json"}), "not valid JSON"),
    (b"JFIF not a png", "not a PNG"),
    (None, "Cannot read"),
])
def test_show_errors_are_one_line_and_non_zero(capsys, tmp_path, content, words):
    path = tmp_path / "img.png"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "gallery", "show", str(path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("darkroom: error: ") and words in err
    assert "Traceback" not in err


def test_registered_in_the_darkroom_command(capsys, saved):
    import engine.cli as cli

    code = cli.main(["gallery", "list"])
    out, _ = capsys.readouterr()
    assert code == 0 and out.count("\n") == 3


def test_commands_use_the_gallery_folder_chosen_in_the_app(capsys, tmp_path):
    from engine import settings

    chosen = tmp_path / "my pictures"
    settings.save(settings.Settings(gallery_dir=str(chosen)))
    g = Gallery(chosen)
    g.save(make_ready(prompt="a chosen folder", seed=5))
    g.close()
    code, out, err = run(capsys, "gallery", "search", "chosen")
    assert code == 0 and err == "" and str(chosen) in out and "a chosen folder" in out
    code, out, _ = run(capsys, "gallery", "reindex")
    assert code == 0 and f"Indexed 1 images in {chosen}" in out


@pytest.mark.parametrize("argv, printed", [
    (["list"], ""),
    (["search", "fox"], ""),
    (["list", "--json"], "[]\n"),
    (["reindex"], "Indexed 0 images"),
])
def test_a_gallery_never_created_is_empty(capsys, darkroom_home, argv, printed):
    code, out, err = run(capsys, "gallery", *argv)
    assert code == 0 and err == ""
    assert out.startswith(printed) if printed else out == ""
    assert not (darkroom_home / "gallery").exists()  # looking does not create it


def test_export_from_a_gallery_never_created(capsys, tmp_path):
    code, out, err = run(capsys, "gallery", "export", str(tmp_path / "out"))
    assert code == 0 and "Exported 0 images" in out and err == ""


def test_a_chosen_gallery_folder_that_vanished_is_reported(capsys, tmp_path):
    from engine import settings

    gone = tmp_path / "usb-stick" / "Darkroom"
    settings.save(settings.Settings(gallery_dir=str(gone)))
    code, out, err = run(capsys, "gallery", "list")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "does not exist (is a drive disconnected?)" in err
    assert "canvas" not in err


@pytest.mark.parametrize("argv", [["list"], ["search", "fox"], ["reindex"], ["export", "{dest}"]])
def test_a_fifo_named_png_never_hangs_a_command(capsys, saved, tmp_path, argv):
    fifo(saved[0].path.parent / "trap.png")
    argv = [a.replace("{dest}", str(tmp_path / "out")) for a in argv]
    with deadline(20):
        code, out, err = run(capsys, "gallery", *argv)
    assert code == 0, err
    assert "trap.png" not in out


def test_show_refuses_a_fifo(capsys, tmp_path):
    path = fifo(tmp_path / "pipe.png")
    with deadline(20):
        code, out, err = run(capsys, "gallery", "show", str(path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "not a regular file" in err


def test_export_into_the_gallery_is_refused(capsys, saved):
    inside = saved[0].path.parent.parent / "exported"
    code, out, err = run(capsys, "gallery", "export", str(inside))
    assert code == 1 and out == ""
    assert "inside the gallery folder" in err and err.count("\n") == 1
    assert not inside.exists()
    code, out, _ = run(capsys, "gallery", "list")
    assert out.count("\n") == 3  # nothing was copied into the gallery
