"""Recording what an agent saw and decided, as a session (frames + its own classes as labels)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..runtime.tick import Sink, Tick
from ..session import SessionWriter


class SessionSink(Sink):
    """Replaying the session through `eval` with the same weights must give the same decisions (lossless codec)."""

    needs_frames = True

    def __init__(self, out: str | Path, classes: list[str], fps: float, source: str, segment_frames: int = 300,
                 codec: str = "FFV1", keep: Callable[[], bool] = lambda: True) -> None:
        self.keep = keep  # false for ticks that should not be recorded (e.g. the one that finds the last episode over)
        self.writer = SessionWriter(out, classes, fps, source, segment_frames, codec, extra={"labeller": "agent"})

    def __call__(self, tick: Tick) -> None:
        if not tick.stale and self.keep():
            self.writer.add(tick.image, tick.class_name, tick.first)

    def close(self) -> None:
        self.writer.close()
