import subprocess
import sys

import pytest

from engine.errors import OfflineError
from engine.hub import download


def test_download_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError) as info:
        download("stable-diffusion-v1-5/stable-diffusion-v1-5", dest=tmp_path / "m")
    assert "cannot be reached" in info.value.message
    assert not any((tmp_path / "m").glob("**/*.safetensors"))


def test_cli_download_unreachable_hub_is_one_line_and_nonzero(tmp_path):
    env = {"PATH": "", "DARKROOM_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, "-m", "gui.launcher", "models", "download", "someone/model"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("darkroom: error: Could not download someone/model")
    assert "Traceback" not in proc.stderr
