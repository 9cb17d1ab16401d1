"""`synthetic:<pattern>`: deterministic moving shapes for demos, tests and benchmarks.

Each frame is a pure function of (pattern, seed, frame index), so two runs give the same pixels.
`bounce` moves a ball that changes direction now and then; `label_of(i)` says which way it moved
since the previous frame (left / straight / right): a small task that needs memory across frames.
`dot` (`MovingDot`) is its five-class relative: a dot moving 4 px a frame left, right, up, down or
not at all.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import SourceError
from .base import Frame, Source

PATTERNS = ("bounce", "bars", "noise", "dot", "gestures")
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


def _fold(x: float, lo: float, hi: float) -> float:
    """x reflected into [lo, hi] (a path that bounces off both ends)."""
    span = hi - lo
    x = (x - lo) % (2 * span)
    return lo + (x if x <= span else 2 * span - x)


MOTIONS = ("left", "right", "up", "down", "still")
_VELOCITY = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])


class MovingDot(Source):
    """`synthetic:dot`: a dot moving `speed` px a frame in one of five directions, each held for 8–40 frames,
    bouncing off the borders. `label_of(i)` is the direction of its displacement since frame i-1 ("still" at
    frame 0): one frame cannot tell, two can."""

    def __init__(self, width: int = 96, height: int = 96, fps: float = 30.0, frames: int = 0, seed: int = 0,
                 speed: int = 4) -> None:
        super().__init__()
        if width < 16 or height < 16:
            raise SourceError(f"synthetic frames must be at least 16x16, got {width}x{height}")
        self.width, self.height, self.fps, self.seed, self.speed = width, height, fps, seed, speed
        self.frame_count = frames or None
        self.name = "synthetic:dot"
        self.truth_classes = MOTIONS
        rng = np.random.default_rng((seed, 0xD07))
        self._dirs = rng.integers(0, len(MOTIONS), size=4096)
        self._lengths = rng.integers(8, 41, size=4096)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)])
        self._origin = rng.integers([8, 8], [width - 8, height - 8])  # whole pixels: what is drawn is where it is
        self._texture = cv2.GaussianBlur(rng.integers(0, 60, (height, width), dtype=np.uint8), (0, 0), 3)

    def _position(self, i: int) -> tuple[float, float]:
        i = i % int(self._starts[-1])
        seg = int(np.searchsorted(self._starts, i, side="right") - 1)
        travel = _VELOCITY[self._dirs[:seg]].T @ self._lengths[:seg] + _VELOCITY[self._dirs[seg]] * (i - self._starts[seg])
        x, y = self._origin + self.speed * travel
        return _fold(x, 5, self.width - 6), _fold(y, 5, self.height - 6)

    def label_of(self, i: int) -> str:
        if i == 0:
            return "still"
        (x0, y0), (x1, y1) = self._position(i - 1), self._position(i)
        dx, dy = round(x1 - x0, 6), round(y1 - y0, 6)
        if abs(dx) >= abs(dy) and dx:
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up" if dy < 0 else "still"

    def render(self, i: int) -> np.ndarray:
        """BGR uint8 (H, W, 3) for frame i: the dot on a fixed blurred texture."""
        image = cv2.cvtColor(self._texture, cv2.COLOR_GRAY2BGR)
        x, y = self._position(i)
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
        return image

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        if self.frame_count is not None and self._seq >= self.frame_count:
            return None
        return self._frame(self.render(self._seq))
