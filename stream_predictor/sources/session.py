"""A recorded session played back as one finite source (`predict --source session_dir`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..session import SessionFrames, kept_firsts, load_session
from .base import Frame, Source


class SessionSource(Source):
    """The session's frames in order; every `stride`-th one, and only the first `frames` when given."""

    def __init__(self, path: str | Path, stride: int = 1, frames: int | None = None) -> None:
        super().__init__()
        self.session = load_session(path)
        self.name = str(path)
        self.stride = stride
        self.fps = self.session.fps / stride
        self._frames = SessionFrames(self.session, frames)
        self._firsts = kept_firsts(self.session.episode_starts, self._frames.stop, stride)
        self.frame_count = len(self._firsts)

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        frames = self._frames
        while frames.index % self.stride and frames.skip():
            pass
        image = frames.read(out)
        if image is None:
            return None
        return self._frame(image, first=bool(self._firsts[(frames.index - 1) // self.stride]))

    def close(self) -> None:
        self._frames.close()
