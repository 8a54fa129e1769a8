import subprocess
import sys

import pytest

from engine.errors import OfflineError
from engine.hub import completed, download


def test_download_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError) as info:
        download("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert "cannot be reached" in info.value.message
    assert completed() == {}


def test_cli_download_unreachable_hub_is_one_line_and_nonzero(tmp_path):
    env = {"PATH": "", "DARKROOM_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, "-m", "gui.launcher", "models", "download", "someone/model"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("darkroom: error: Could not download someone/model")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("repo_id", ["../../etc", "..", "a/..", "owner/name/extra", "a b/c", "", "x" * 200, "/abs/path"])
def test_invalid_repo_ids_are_refused_before_any_download(monkeypatch, tmp_path, repo_id):
    import huggingface_hub

    from engine.errors import DarkroomError, ErrorKind

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("reached the network"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("reached the network"))
    with pytest.raises(DarkroomError) as info:
        download(repo_id)
    assert info.value.kind == ErrorKind.VALIDATION
    assert "is not a Hugging Face model id" in info.value.message and "\n" not in info.value.message
    assert completed() == {}


def test_cli_invalid_repo_id_is_one_line_exit_2(tmp_path):
    env = {"PATH": "", "DARKROOM_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "gui.launcher", "models", "download", "../../etc"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("darkroom: error: '../../etc' is not a Hugging")
    assert not list(tmp_path.rglob("etc"))
