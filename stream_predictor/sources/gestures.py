"""`synthetic:gestures`: a webcam stand-in. A hand-like shape on a textured, drifting, changing background, doing
gestures, with camera noise and lighting changes.

The script of a session is drawn from its seed: idle stretches (the hand away, or loose as a fist drifting about)
between gestures: a swipe to the left or to the right across the frame, a circle, an open hand held still. Every
frame is a pure function of (seed, frame index), so a session replays exactly.

Two labellings of the same pictures (`task=`):
- `gesture` (default): the gesture in progress: none, swipe_left, swipe_right, circle, hold. One frame cannot tell
  a swipe from a circle or a hold; the frames before it can.
- `pose`: what one frame shows: no hand, or an open hand or a fist in the left, middle or right third. A per-frame
  task on the same kind of pictures, for training an encoder that the gesture task then starts from (docs/webcam.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import SourceError
from .base import Frame, Source

GESTURES = ("none", "swipe_left", "swipe_right", "circle", "hold")
POSES = ("absent", "open_left", "open_middle", "open_right", "fist_left", "fist_middle", "fist_right")
TASKS = {"gesture": GESTURES, "pose": POSES}
_SEGMENTS = 2048  # the script repeats after this many segments (hundreds of thousands of frames)


class Gestures(Source):
    def __init__(self, width: int = 160, height: int = 120, fps: float = 15.0, frames: int = 0, seed: int = 0,
                 task: str = "gesture") -> None:
        super().__init__()
        if task not in TASKS:
            raise SourceError(f"unknown task '{task}' for synthetic:gestures; known: {', '.join(TASKS)}")
        if width < 48 or height < 48:
            raise SourceError(f"synthetic:gestures frames must be at least 48x48, got {width}x{height}")
        self.width, self.height, self.fps, self.seed, self.task = width, height, fps, seed, task
        self.frame_count = frames or None
        self.name = "synthetic:gestures"
        self.truth_classes = TASKS[task]
        rng = np.random.default_rng((seed, 0x6E57))
        # The script: alternating idle and gesture segments, with their lengths and parameters.
        kinds = np.zeros(_SEGMENTS, np.int64)
        kinds[1::2] = rng.integers(1, len(GESTURES), _SEGMENTS // 2)
        lengths = np.where(kinds == 0, rng.integers(6, 30, _SEGMENTS), 0)
        lengths = np.where(kinds == 1, rng.integers(10, 17, _SEGMENTS), lengths)
        lengths = np.where(kinds == 2, rng.integers(10, 17, _SEGMENTS), lengths)
        lengths = np.where(kinds == 3, rng.integers(18, 28, _SEGMENTS), lengths)
        self._kinds = kinds
        self._lengths = np.where(kinds == 4, rng.integers(12, 24, _SEGMENTS), lengths)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)])
        self._params = rng.random((_SEGMENTS, 6))  # per segment: positions, directions, idle style
        # The person and the room: skin tone, hand size, backgrounds, lighting.
        self._skin = np.array([rng.uniform(60, 150), rng.uniform(100, 175), rng.uniform(150, 235)])  # BGR
        self._size = rng.uniform(0.11, 0.15) * height
        self._scenes = [self._scene(rng) for _ in range(3)]
        self._scene_every = int(rng.integers(300, 600))  # frames between scene changes (someone moves the camera)

    # --- the script ------------------------------------------------------------------------------------
    def _segment(self, i: int) -> tuple[int, float]:
        """(segment index, progress 0..1 through it) of frame i."""
        i = i % int(self._starts[-1])
        seg = int(np.searchsorted(self._starts, i, side="right") - 1)
        return seg, (i - self._starts[seg]) / max(1, self._lengths[seg] - 1)

    def _hand(self, i: int) -> tuple[float, float, bool] | None:
        """Where the hand is in frame i (x, y in pixels) and whether it is open; None: no hand in view."""
        seg, t = self._segment(i)
        kind, p = int(self._kinds[seg]), self._params[seg]
        w, h = self.width, self.height
        y0 = h * (0.35 + 0.3 * p[1])
        if kind == 0:  # idle: away (half of the time), or a fist drifting slowly
            if p[0] < 0.5:
                return None
            x = w * (0.2 + 0.6 * p[2]) + w * 0.08 * np.sin(2 * np.pi * (p[3] + 0.3 * t))
            return x, y0 + h * 0.05 * np.cos(2 * np.pi * (p[4] + 0.4 * t)), False
        if kind in (1, 2):  # swipes: across the frame, eased, slightly curved
            s = 0.5 - 0.5 * np.cos(np.pi * t)
            a, b = w * (0.82 - 0.1 * p[2]), w * (0.18 + 0.1 * p[3])
            x = a + (b - a) * s if kind == 1 else b + (a - b) * s
            return x, y0 - h * 0.06 * np.sin(np.pi * s), True
        if kind == 3:  # circle, either way round
            r = h * (0.18 + 0.06 * p[2])
            cx = w * (0.35 + 0.3 * p[3])
            cy = float(np.clip(y0, r + 4, h - r - 4))
            ang = 2 * np.pi * (p[4] + (t if p[5] < 0.5 else -t))
            return cx + r * np.cos(ang), cy + r * np.sin(ang), True
        # hold: an open hand, still but for a tremor
        x = w * (0.25 + 0.5 * p[2])
        return x + 1.5 * np.sin(1.7 * i), y0 + 1.5 * np.cos(2.3 * i), True

    def label_of(self, i: int) -> str:
        if self.task == "gesture":
            return GESTURES[int(self._kinds[self._segment(i)[0]])]
        hand = self._hand(i)
        if hand is None:
            return "absent"
        third = ("left", "middle", "right")[min(2, int(3 * hand[0] / self.width))]
        return f"{'open' if hand[2] else 'fist'}_{third}"

    # --- the pictures -------------------------------------------------------------------------------------
    def _scene(self, rng: np.random.Generator) -> np.ndarray:
        """A room: blurred coloured noise with a few furniture-like blocks, larger than the frame (it drifts)."""
        h, w = self.height + 32, self.width + 32
        base = rng.uniform(40, 200, 3)
        tex = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)), (0, 0), rng.uniform(2, 6))
        img = np.clip(base + tex, 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, w // 2)), y + int(rng.integers(10, h // 2))),
                          tuple(int(c) for c in rng.uniform(20, 235, 3)), -1)
        return img

    def _draw_hand(self, img: np.ndarray, x: float, y: float, open_: bool, shade: float) -> None:
        s, skin = self._size, tuple(float(c) for c in self._skin * shade)
        cx, cy = int(round(x)), int(round(y))
        if open_:
            cv2.ellipse(img, (cx, cy), (int(s * 0.55), int(s * 0.65)), 0, 0, 360, skin, -1, cv2.LINE_AA)
            for k, ang in enumerate((-30, -10, 10, 30)):  # fingers spread upwards
                rad = np.deg2rad(ang - 90)
                length = s * (0.95 if k in (1, 2) else 0.8)
                tip = (int(cx + length * np.cos(rad) + s * 0.12 * (k - 1.5)), int(cy + length * np.sin(rad)))
                cv2.line(img, (cx + int(s * 0.12 * (k - 1.5)), cy - int(s * 0.3)), tip, skin, max(2, int(s * 0.16)),
                         cv2.LINE_AA)
            cv2.line(img, (cx - int(s * 0.4), cy), (cx - int(s * 0.85), cy - int(s * 0.35)), skin, max(2, int(s * 0.18)),
                     cv2.LINE_AA)  # thumb
        else:
            cv2.ellipse(img, (cx, cy), (int(s * 0.5), int(s * 0.45)), 0, 0, 360, skin, -1, cv2.LINE_AA)
            for k in range(4):  # knuckles
                cv2.circle(img, (cx - int(s * 0.3) + int(s * 0.2 * k), cy - int(s * 0.35)), max(2, int(s * 0.13)), skin,
                           -1, cv2.LINE_AA)
        # the forearm, down to the bottom edge
        cv2.line(img, (cx, cy + int(s * 0.4)), (cx + int(s * 0.3), self.height + 10), skin, max(3, int(s * 0.5)),
                 cv2.LINE_AA)

    def render(self, i: int) -> np.ndarray:
        """BGR uint8 (H, W, 3) for frame i."""
        h, w = self.height, self.width
        scene = self._scenes[(i // self._scene_every) % len(self._scenes)]
        dx = int(16 + 10 * np.sin(i / 97.0 + self.seed) + 2 * np.sin(i / 7.0))  # slow drift and a little shake
        dy = int(16 + 8 * np.cos(i / 131.0 + self.seed) + 2 * np.cos(i / 9.0))
        img = scene[dy : dy + h, dx : dx + w].copy()
        hand = self._hand(i)
        if hand is not None:
            self._draw_hand(img, *hand, shade=1.0)
        # Lighting: a slow swell, a step now and then (a lamp), and a gradient across the picture.
        gain = 0.85 + 0.25 * np.sin(i / 173.0 + 2 * self.seed) + (0.2 if (i // 211) % 3 == 1 else 0.0)
        ramp = np.linspace(0.9, 1.1, w, dtype=np.float32)[None, :, None]
        noise = np.random.default_rng((self.seed, i)).normal(0, 6, (h, w, 3)).astype(np.float32)
        return np.clip(img.astype(np.float32) * (gain * ramp) + noise, 0, 255).astype(np.uint8)

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        if self.frame_count is not None and self._seq >= self.frame_count:
            return None
        return self._frame(self.render(self._seq))
