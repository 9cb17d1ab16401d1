"""Where the shipped configs and weights are found, from any working directory.

In a checkout (or an editable install) they sit beside the package: `configs/`, `weights/`. A normal `pip install .`
puts them in the installed data folder `<prefix>/share/stream_predictor/{configs,weights}` (pyproject's data-files).
A relative path such as `weights/pong.safetensors` (the configs name the shipped weights so) is used as given where it
exists, else looked up there.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALLED = Path(sys.prefix) / "share" / "stream_predictor"
KINDS = ("configs", "weights")


def data_dir(kind: str) -> Path:
    """The folder of shipped `kind` ("configs" or "weights"): the checkout's, else the installed one."""
    for base in (CHECKOUT, INSTALLED):
        if (base / kind).is_dir():
            return base / kind
    return CHECKOUT / kind


def shipped(path: str | Path) -> Path:
    """`path` as given where it exists (or is absolute); a relative `weights/…` or `configs/…` path that does not exist
    here, in the shipped folder."""
    p = Path(path)
    if p.exists() or p.is_absolute() or not p.parts or p.parts[0] not in KINDS:
        return p
    found = data_dir(p.parts[0]).joinpath(*p.parts[1:])
    return found if found.exists() else p
