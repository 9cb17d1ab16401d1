"""What every source gives: BGR uint8 (H, W, 3) frames numbered 0, 1, 2, … with capture times."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    seq: int  # 0, 1, 2, … in the order the source produced them
    t_capture: float  # time.monotonic() when the frame was read
    image: np.ndarray  # BGR uint8 (H, W, 3)
    first: bool = False  # the first frame of an episode or after a gap: recurrent state restarts here
    reward: float = 0.0  # a game's score change over the step(s) that led to this frame


class Source:
    """Base of all sources. `read()` returns the next Frame, or None at the end of the stream.

    A live source (camera, stream, screen) raises `ReadError` on a failed read; the capture thread
    then calls `reopen()` with backoff. Finite and generated sources (files, folders, games, synthetic)
    set `live = False` and can be replayed in lockstep.
    """

    live: bool = False
    reactive: bool = False  # its frames depend on the decisions (a game that waits for each action)
    fps: float = 0.0  # native rate, 0 if unknown
    fps_cap: float = 0.0  # live sources: the capture thread paces reads to at most this rate (0: no cap)
    frame_count: int | None = None  # frames in a finite source, None if unknown or endless
    name: str = ""
    truth_classes: tuple[str, ...] = ()  # a source that knows each frame's true class names them (see `label_of`)

    def __init__(self) -> None:
        self._seq = 0

    def _frame(self, image: np.ndarray, first: bool = False, reward: float = 0.0) -> Frame:
        frame = Frame(self._seq, time.monotonic(), image, first or self._seq == 0, reward)
        self._seq += 1
        return frame

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        """The next frame. A source may decode into `out` (a free ring slot) when its shape fits, saving a copy."""
        raise NotImplementedError

    def reopen(self) -> None:
        """Reconnect a live source after a failed read; raise to give up."""
        raise NotImplementedError(f"{self.name} cannot reconnect")

    def interrupt(self) -> None:
        """Wake a `read()` that waits (e.g. a game waiting for an action), from another thread."""

    def label_of(self, seq: int) -> str:
        """The true class of frame `seq`, for sources with `truth_classes` (generated ones)."""
        raise NotImplementedError(f"{self.name} does not know the true class of its frames")

    def summary(self) -> dict:
        """Figures of the source's own for a run's summary (e.g. files it could not read)."""
        return {}

    def status(self) -> dict:
        """Live figures of the source's own, read from another thread while it runs (e.g. a game's score)."""
        return {}

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
