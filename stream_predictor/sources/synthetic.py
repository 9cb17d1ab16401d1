"""`synthetic:<pattern>`: deterministic moving shapes for demos, tests and benchmarks.

Each frame is a pure function of (pattern, seed, frame index), so two runs give the same pixels.
`bounce` moves a ball that changes direction now and then; `label_of(i)` says which way it moved
since the previous frame (left / straight / right): a small task that needs memory across frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import SourceError
from .base import Frame, Source

PATTERNS = ("bounce", "bars", "noise")
DIRECTIONS = ("left", "straight", "right")


class Synthetic(Source):
    def __init__(self, pattern: str = "bounce", width: int = 160, height: int = 120, fps: float = 60.0,
                 frames: int = 0, seed: int = 0) -> None:
        super().__init__()
        if pattern not in PATTERNS:
            raise SourceError(f"unknown synthetic pattern '{pattern}'; known: {', '.join(PATTERNS)}")
        if width < 16 or height < 16:
            raise SourceError(f"synthetic frames must be at least 16x16, got {width}x{height}")
        self.pattern, self.width, self.height, self.seed = pattern, width, height, seed
        self.fps = fps
        self.frame_count = frames or None
        self.name = f"synthetic:{pattern}"
        self.truth_classes = DIRECTIONS
        # A fixed random script of directions, one segment every 8..40 frames.
        rng = np.random.default_rng(seed)
        self._dirs = rng.integers(0, 3, size=4096)
        self._lengths = rng.integers(8, 41, size=4096)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)])

    def label_of(self, i: int) -> str:
        """Which way the ball moved from frame i-1 to frame i: only visible across frames."""
        dx = self._x_of(i) - self._x_of(i - 1) if i > 0 else 0.0
        return DIRECTIONS[int(np.sign(round(dx, 6))) + 1]

    def _x_of(self, i: int) -> float:
        # x integrates the velocity of each segment, reflected into the frame.
        i = i % int(self._starts[-1])
        seg = int(np.searchsorted(self._starts, i, side="right") - 1)
        v = self._dirs[:seg] - 1
        x = float(np.dot(v, self._lengths[:seg])) + (self._dirs[seg] - 1) * (i - self._starts[seg])
        span = self.width - 20
        x = (x * 2.0) % (2 * span)
        return 10 + (x if x < span else 2 * span - x)

    def render(self, i: int) -> np.ndarray:
        """BGR uint8 (H, W, 3) for frame i."""
        h, w = self.height, self.width
        if self.pattern == "noise":
            return np.random.default_rng((self.seed, i)).integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = np.full((h, w, 3), 24, np.uint8)
        if self.pattern == "bars":
            for k in range(0, w, 16):
                cv2.rectangle(image, ((k + 2 * i) % w, 0), ((k + 2 * i) % w + 6, h - 1), (40, 160, 220), -1)
            return image
        y = int(h / 2 + (h / 3) * np.sin(i / 23.0 + self.seed))
        x = int(round(self._x_of(i)))
        cv2.circle(image, (x, y), max(3, h // 12), (255, 255, 255), -1)
        cv2.rectangle(image, (2, 2), (w - 3, h - 3), (90, 90, 90), 1)
        return image

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        if self.frame_count is not None and self._seq >= self.frame_count:
            return None
        i = self._seq
        return self._frame(self.render(i))
