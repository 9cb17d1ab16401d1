"""What the runtime hands out: a Tick per decision, and the Sink interface that receives them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tick:
    seq: int  # the frame's seq from the source; for a stale tick, the last frame's
    t_capture: float  # monotonic time the frame was captured
    t_decision: float  # monotonic time the decision was made
    latency_ms: float  # capture → decision
    class_id: int
    class_name: str
    probs: list[float]
    skipped: int  # frames overwritten unseen since the previous tick
    stale: bool = False  # a fixed-rate tick with no new frame: the last decision repeated
    first: bool = False  # the recurrent state was reset at this frame
    image: np.ndarray | None = field(default=None, repr=False)  # the frame (BGR uint8), only when a sink needs frames
    label: str | None = None  # a labelling agent's class for the frame, where one runs beside the player (DAgger)
    reward: float = 0.0  # a game's score change since the previous tick (what the decision before this one earned)

    def to_json(self) -> dict:
        return {"seq": self.seq, "t_capture": round(self.t_capture, 6), "t_decision": round(self.t_decision, 6),
                "latency_ms": round(self.latency_ms, 3), "class_id": self.class_id, "class": self.class_name,
                "probs": [round(p, 6) for p in self.probs], "skipped": self.skipped, "stale": self.stale}


class Timings:
    """The last `keep` values of a per-tick measurement, in a fixed array: memory stays flat on long runs."""

    def __init__(self, keep: int = 1 << 17) -> None:
        self.values = np.zeros(keep)
        self.n = 0

    def add(self, value: float) -> None:
        self.values[self.n % len(self.values)] = value
        self.n += 1

    def percentiles(self, *qs: float) -> list[float]:
        data = self.values[: min(self.n, len(self.values))]
        return [round(float(np.percentile(data, q)), 3) if data.size else 0.0 for q in qs]


class Sink:
    """Where ticks go. Subclasses implement `__call__`; everything else has a default.

    - `needs_frames`: the ticks must carry the frame (`Tick.image`), e.g. to draw or record it.
    - `acts`: the sink acts on the world (keys, a game's controls), so each decision must come before the next
      frame is read: recorded video is then never decided in chunks.
    - `finished`: set it to end the run; the Predictor checks it after every tick (a game's episodes
      are over, a preview window was closed). A sink never holds the Predictor.
    - `attach(view, status)`: called by the Predictor before the first tick, with `view(image)` (the frame
      as the model sees it, after crop and resize; None for an agent without a model) and `status()` (the
      run's live figures: reconnects, a game's score).
    - `summary()`: figures merged into the run's summary.
    - `close()`: called once on every exit path.
    """

    needs_frames: bool = False
    acts: bool = False
    finished: bool = False

    def __call__(self, tick: Tick) -> None:
        raise NotImplementedError

    def attach(self, view: Callable[[np.ndarray], np.ndarray] | None, status: Callable[[], dict]) -> None:
        pass

    def summary(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class CallbackSink(Sink):
    """A plain function of each tick."""

    def __init__(self, fn: Callable[[Tick], None]) -> None:
        self.fn = fn

    def __call__(self, tick: Tick) -> None:
        self.fn(tick)
