"""TensorBoard logs of training and fine-tuning, beside the PNG curves (which are written either way).

On by default (`train.tensorboard`, `tune.tensorboard`) when the `tensorboard` package is installed
(`pip install -e ".[tensorboard]"`); without it, one line says so. Logs go to OUT.tb/ beside the weights:
`tensorboard --logdir runs/`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2


def open_board(enabled: bool, out: Path) -> Any | None:
    """A SummaryWriter for OUT.tb/, or None (turned off, or tensorboard not installed: said once on stderr)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed, so no TensorBoard log (pip install tensorboard); PNG curves are written",
              file=sys.stderr)
        return None
    return SummaryWriter(str(out.with_suffix("").with_name(out.stem + ".tb")))  # beside the weights


def log_scalars(board: Any | None, values: dict, step: int, prefix: str = "") -> None:
    if board is None:
        return
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            board.add_scalar(prefix + name, value, step)


def log_png(board: Any | None, tag: str, path: str | Path, step: int) -> None:
    """A picture already written as PNG (a confusion matrix, a curve), into the log as an image."""
    if board is None:
        return
    image = cv2.imread(str(path))
    if image is not None:
        board.add_image(tag, image[:, :, ::-1].copy(), step, dataformats="HWC")
