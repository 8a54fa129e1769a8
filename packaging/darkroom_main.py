"""The frozen bundle's entry point (PyInstaller runs this file as ``__main__``): the ``darkroom`` command.

No arguments open the window; ``--self-test``, ``--open-parameters`` and the headless subcommands work as with
the installed ``darkroom`` (see :mod:`gui.launcher`).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process started by multiprocessing runs its task, not the app
    from gui.launcher import main

    sys.exit(main())
