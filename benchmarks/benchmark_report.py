"""How a benchmark hands over its figures: the JSON report on stdout, and the same text in the --out file if one was
given (so a run can be committed under benchmarks/results without copying from a terminal)."""
from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict, out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
