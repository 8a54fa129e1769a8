"""Guards against Qt binding releases that corrupt the interpreter during long sessions."""

import subprocess
import sys


def test_many_void_qt_calls_do_not_corrupt_the_interpreter():
    # PySide6 6.12.0 on Python 3.11 drops a reference to None on every call returning nothing, aborting the app
    # after a few thousand calls; pyproject.toml excludes it. This fails if such a release is installed.
    code = "from PySide6.QtCore import QObject\no = QObject()\nfor _ in range(200_000):\n    o.setObjectName('x')\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-500:]
