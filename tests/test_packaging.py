"""Packaging: resources are found the same way from a checkout, a wheel and a frozen bundle; the wheel carries them;
the Linux desktop files install and uninstall into the user's folders; the launcher's bundle-facing options."""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from engine import paths

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"


# -- resources --------------------------------------------------------------------------------------------------
def test_a_checkout_finds_its_resources_folder():
    assert paths.resources_dir() == ROOT / "resources"
    assert (paths.BUNDLED_MODELS / "darkroom-emoji" / "model_index.json").is_file()


def test_a_frozen_bundle_finds_resources_in_its_data_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    assert paths.resources_dir() == tmp_path / "_internal" / "resources"


def test_a_frozen_bundle_without_meipass_looks_beside_the_executable(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "Darkroom"))
    assert paths.resources_dir() == tmp_path / "resources"


def _project_files(dest: Path) -> Path:
    """The files a wheel is built from, copied (the working tree stays untouched by the build)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("engine", "gui", "resources"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def test_a_wheel_carries_the_resources_and_an_installed_copy_finds_them(tmp_path):
    source = _project_files(tmp_path / "src")
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(wheels)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = wheels.glob("darkroom-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    model = "darkroom_resources/models/darkroom-emoji"
    assert {f"{model}/model_index.json", f"{model}/unet/diffusion_pytorch_model.safetensors",
            f"{model}/tokenizer/vocab.json", "darkroom_resources/icons/darkroom.svg",
            "darkroom_resources/icons/darkroom-256.png", "engine/selftest.py", "gui/welcome.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "packaging/", "resources/")) for n in names)
    # An installed copy, away from the checkout: -S keeps the editable install's finder out.
    code = "import sys; sys.path.insert(0, sys.argv[1]); from engine import paths; print(paths.RESOURCES)"
    out = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path / "site")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = Path(out.stdout.strip())
    assert found == tmp_path / "site" / "darkroom_resources"
    assert (found / "models" / "darkroom-emoji" / "model_index.json").is_file()


def test_every_package_in_the_tree_is_in_the_wheel():
    """pyproject lists packages by hand (resources/ is mapped to darkroom_resources): a new one must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for top in ("engine", "gui")
               for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert in_tree <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(in_tree - listed)}"
    assert "darkroom_resources" in listed


def test_the_bundle_extra_names_pyinstaller():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("pyinstaller") for dep in extras["bundle"])


# -- the Linux desktop entry ------------------------------------------------------------------------------------
def _desktop(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser


def test_the_desktop_template_opens_pngs_and_has_an_open_parameters_action():
    entry = _desktop(LINUX / "darkroom.desktop")
    main = entry["Desktop Entry"]
    assert main["Exec"] == '"@EXEC@" %f' and main["Icon"] == "@ICON@"
    assert "image/png;" in main["MimeType"] and main["Actions"] == "open-parameters;"
    action = entry["Desktop Action open-parameters"]
    assert action["Name"] == "Open parameters" and action["Exec"] == '"@EXEC@" --open-parameters %f'


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the desktop files are for Linux")
def test_install_and_uninstall_use_the_users_xdg_folders(tmp_path):
    bundle = tmp_path / "My Apps" / "Darkroom 100%"
    (bundle / "_internal").mkdir(parents=True)
    for name in ("install.sh", "uninstall.sh", "darkroom.desktop"):
        shutil.copy2(LINUX / name, bundle / name)
    shutil.copytree(ROOT / "resources" / "icons", bundle / "_internal" / "resources" / "icons")
    exe = bundle / "Darkroom"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    data = tmp_path / "data"
    env = {**os.environ, "XDG_DATA_HOME": str(data), "HOME": str(tmp_path / "home")}

    proc = subprocess.run(["sh", str(bundle / "install.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    desktop = data / "applications" / "darkroom.desktop"
    entry = _desktop(desktop)
    assert entry["Desktop Entry"]["Exec"] == f'"{exe}" %f'.replace("100%", "100%%")
    assert entry["Desktop Action open-parameters"]["Exec"].endswith("--open-parameters %f")
    assert entry["Desktop Entry"]["Icon"] == "darkroom"
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "darkroom.png").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "darkroom.svg").is_file()
    validate = shutil.which("desktop-file-validate")
    if validate:
        checked = subprocess.run([validate, str(desktop)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    proc = subprocess.run(["sh", str(bundle / "uninstall.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not desktop.exists()
    assert not list((data / "icons").rglob("darkroom.*"))


def test_install_refuses_a_missing_executable(tmp_path):
    proc = subprocess.run(["sh", str(LINUX / "install.sh"), "--exec", str(tmp_path / "nothing")],
                          env={**os.environ, "XDG_DATA_HOME": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 1 and "not an executable" in proc.stderr
    assert not (tmp_path / "applications").exists()


def test_the_checkout_shortcut_reuses_the_bundle_installer(monkeypatch):
    spec = importlib.util.spec_from_file_location("darkroom_bootstrap", ROOT / "packaging" / "bootstrap.py")
    boot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(boot)
    ran = []
    monkeypatch.setattr(boot, "ensure_environment", lambda extras: False)
    monkeypatch.setattr(boot.sys, "platform", "linux")
    monkeypatch.setattr(boot.subprocess, "run", lambda argv, **kw: ran.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert boot.main(["shortcut"]) == 0
    [argv] = ran
    assert argv[1] == str(LINUX / "install.sh")
    assert argv[2:] == ["--exec", str(boot.VENV / "bin" / "darkroom-app"), "--icons", str(ROOT / "resources" / "icons")]


# -- the launcher's bundle-facing options ---------------------------------------------------------------------
def test_self_test_flag_runs_the_self_test_without_qt(monkeypatch):
    import engine.selftest
    import gui.launcher

    seen = []
    monkeypatch.setattr(engine.selftest, "main", lambda argv: seen.append(list(argv)) or 0)
    assert gui.launcher.main(["--self-test", "--device", "cpu"]) == 0
    assert seen == [["--device", "cpu"]]


@pytest.mark.parametrize("argv, expected", [
    (["--open-parameters", "x.png"], ["--open-parameters", "x.png"]),
    (["--open-parameters=x.png"], ["--open-parameters=x.png"]),
    (["app", "--open-parameters", "x.png"], ["--open-parameters", "x.png"]),
])
def test_open_parameters_opens_the_window(monkeypatch, argv, expected):
    import gui.app
    import gui.launcher

    calls = []
    monkeypatch.setattr(gui.app, "run_app", lambda args, launch_t0=None: calls.append(list(args)) or 0)
    assert gui.launcher.main(argv) == 0
    assert calls == [expected]


def test_a_png_given_alone_opens_the_window_with_its_parameters(monkeypatch, tmp_path):
    import gui.app
    import gui.launcher

    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    calls = []
    monkeypatch.setattr(gui.app, "run_app", lambda args, launch_t0=None: calls.append(list(args)) or 0)
    assert gui.launcher.main([str(picture)]) == 0
    assert gui.launcher.main_gui([str(picture)]) == 0  # darkroom-app, as the checkout's desktop entry runs it
    assert calls == [["--open-parameters", str(picture)]] * 2


def test_window_options_are_taken_out_and_the_rest_left_for_qt():
    from gui.app import WindowOptions, parse_window_options

    assert parse_window_options(["-style", "fusion", "--open-parameters", "a b.png"]) == (
        WindowOptions(open_parameters=Path("a b.png")), ["-style", "fusion"])
    assert parse_window_options(["--open-parameters=c.png"])[0].open_parameters == Path("c.png")
    assert parse_window_options([]) == (WindowOptions(), [])
    with pytest.raises(ValueError, match="needs the path"):
        parse_window_options(["--open-parameters"])


def test_the_spec_leaves_out_the_trainer_tests_and_unused_qt(monkeypatch):
    text = (ROOT / "packaging" / "darkroom.spec").read_text()
    for name in ('"engine.train"', '"tests"', '"benchmarks"', "QtNetwork", "QtQml", "BUNDLE(", "icon="):
        assert name in text


# -- trimming Qt's ICU data -----------------------------------------------------------------------------------
def _icu_data():
    spec = importlib.util.spec_from_file_location("darkroom_icu_data", ROOT / "packaging" / "icu_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("item, kept", [
    ("root.res", True), ("en.res", True), ("en_GB.res", True), ("pool.res", True), ("res_index.res", True),
    ("de.res", False), ("sr_Latn_BA.res", False), ("zh_Hant.res", False),
    ("supplementalData.res", True), ("zoneinfo64.res", True), ("metaZones.res", True), ("likelySubtags.res", True),
    ("cnvalias.icu", True), ("nfkc.nrm", True), ("uemoji.icu", True),
    ("ibm-943_P15A-2003.cnv", False), ("confusables.cfu", False),
    ("coll/root.res", True), ("coll/ucadata.icu", True), ("coll/en_US_POSIX.res", True), ("coll/de.res", False),
    ("coll/de_.res", False), ("zone/en.res", True), ("zone/pool.res", True), ("zone/fr.res", False),
    ("curr/en.res", False), ("lang/root.res", False), ("brkitr/cjdict.dict", False), ("translit/root.res", False),
])
def test_icu_trimming_keeps_root_english_and_shared_tables(item, kept):
    assert _icu_data().keep(item) is kept


QT_ICU_CHECK = """
from PySide6.QtCore import QCollator, QLocale, QStringDecoder, QTimeZone
maps = open("/proc/self/maps").read()
assert "{lib}" in maps, "the trimmed library was not the one loaded"
for name in ("en_US", "de_DE", "ja_JP"):
    collator = QCollator(QLocale(name))
    collator.setNumericMode(True)
    assert sorted(["b10", "a", "B2", "z", "b9"], key=collator.sortKey) == ["a", "B2", "b9", "b10", "z"], name
assert QLocale("tr_TR").toUpper("i") == "\\u0130"
zone = QTimeZone(b"Europe/Berlin")
assert zone.displayName(QTimeZone.StandardTime, QTimeZone.LongName, QLocale("en_US")) == "Central European Standard Time"
assert QStringDecoder("UTF-16").isValid()
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle's step")
def test_trimmed_icu_data_still_serves_what_qt_asks_of_it(tmp_path):
    icu_data = _icu_data()
    import PySide6

    original = next(Path(PySide6.__file__).parent.rglob("libicudata.so.*"), None)
    if original is None:
        pytest.skip("this PySide6 has no ICU of its own")
    for tool in ("icupkg", "cc", "nm", "readelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (the build keeps the ICU data whole without it)")
    lib_dir = tmp_path / "bundle" / "_internal" / "PySide6" / "Qt" / "lib"
    lib_dir.mkdir(parents=True)
    shutil.copy2(original, lib_dir / original.name)
    said = []
    saved = icu_data.trim(tmp_path / "bundle", said.append)
    trimmed = lib_dir / original.name
    assert saved > 20 * 2**20 and trimmed.stat().st_size < 8 * 2**20, said
    # The dynamic linker takes LD_LIBRARY_PATH before Qt's own $ORIGIN search path.
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", QT_ICU_CHECK.replace("{lib}", str(trimmed))], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_icu_trimming_is_skipped_with_a_message_without_its_tools(tmp_path, monkeypatch):
    icu_data = _icu_data()
    lib_dir = tmp_path / "_internal" / "PySide6" / "Qt" / "lib"
    lib_dir.mkdir(parents=True)
    (lib_dir / "libicudata.so.73").write_bytes(b"\0" * 1024)
    monkeypatch.setattr(icu_data.sys, "platform", "linux")
    monkeypatch.setattr(icu_data.shutil, "which", lambda name: None if name == "icupkg" else f"/usr/bin/{name}")
    said = []
    assert icu_data.trim(tmp_path, said.append) == 0
    assert "icupkg not found" in said[0]
    assert (lib_dir / "libicudata.so.73").stat().st_size == 1024


# -- stripping libraries ---------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("readelf") is None or not sys.platform.startswith("linux"), reason="needs readelf")
def test_only_libraries_with_a_symbol_table_and_no_search_path_are_stripped_unasked():
    import PIL
    import tokenizers

    spec = importlib.util.spec_from_file_location("darkroom_build", ROOT / "packaging" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    readelf = shutil.which("readelf")
    # tokenizers' extension carries its symbol table; Pillow's was rewritten by a repair tool (RPATH)
    plain = next(Path(tokenizers.__file__).parent.glob("*.so"))
    repaired = next(Path(PIL.__file__).parent.glob("_imaging.*.so"))
    assert build._untouched_with_symbols(plain, readelf) is True
    assert build._untouched_with_symbols(repaired, readelf) is False
