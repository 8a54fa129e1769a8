"""``python -m gui`` opens the window (same as ``darkroom`` with no arguments)."""

import sys

from gui.launcher import main

if __name__ == "__main__":
    sys.exit(main())
