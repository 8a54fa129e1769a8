"""``python -m engine.train train …`` is ``darkroom train …`` (and likewise for ``evaluate``)."""

import sys

from ..cli import main

raise SystemExit(main(sys.argv[1:]))
