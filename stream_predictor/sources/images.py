"""A folder of images, read in sorted order. Unreadable files are skipped and counted."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from .base import Frame, Source

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageFolder(Source):
    def __init__(self, folder: str | Path, fps: float = 30.0) -> None:
        super().__init__()
        folder = Path(folder)
        self.name = str(folder)
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder: {folder}")
        self.fps = fps
        self.frame_count = len(self.files)
        self.unreadable: list[Path] = []
        self._next = 0

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.unreadable.append(path)
                log.warning("skipping unreadable image %s", path)
                continue
            return self._frame(image)
        return None

    def summary(self) -> dict:
        return {"unreadable": len(self.unreadable)}
