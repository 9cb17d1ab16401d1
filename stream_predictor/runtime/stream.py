"""One stream of the decision loop: a source with its capture thread and ring, its sinks, its figures, and what it last
saw and said. The Predictor holds one (a `Predictor`) or K (a `MultiPredictor`) and decides for all in one call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..sources import Source
from .agent import Decision
from .capture import CaptureThread
from .ring import RingFrame
from .tick import Sink, Tick, Timings


@dataclass
class PredictorStats:
    ticks: int = 0
    frames: int = 0  # frames processed (encoded once each)
    stale: int = 0
    skipped: int = 0
    resets: int = 0
    latency_ms: Timings = field(default_factory=Timings)
    model_ms: Timings = field(default_factory=Timings)  # preprocess → encode → step → probabilities


class Stream:
    def __init__(self, source: Source, cfg: Config, sinks: list[Sink], ring_size: int, max_frames: int,
                 keep_frames: bool, view: Callable[[np.ndarray], np.ndarray] | None, agent_status: Callable[[], dict]) -> None:
        self.source, self.sinks, self.max_gap_s = source, sinks, cfg.predict.max_gap_s
        self.keep_frames = keep_frames or any(s.needs_frames for s in sinks)
        self.capture = CaptureThread.configured(source, cfg.source, ring_size, cfg.replay, max_frames)
        self.stats = PredictorStats()
        # what latency_ms measures: in lockstep the capture thread reads ahead, so a frame waits in the ring behind the
        # ones before it; model_ms is the decision's own time
        self.latency_is = ("from capture to decision" if source.live or cfg.replay != "lockstep" else
                           "from decoding to decision, with the wait in the ring behind earlier frames (lockstep reads ahead)")
        self.last: RingFrame | None = None  # the last frame decided on
        self.last_tick: Tick | None = None
        self.ended = False
        self._sinks_closed = False
        for sink in sinks:
            sink.attach(view, lambda: {"reconnects": self.capture.stats.reconnects, **source.status(), **agent_status()})

    @property
    def last_seq(self) -> int:
        return -1 if self.last is None else self.last.seq

    def next_frame(self, stop: threading.Event, deadline: float | None, after: int | None = None) -> RingFrame | None:
        """The next frame after seq `after` (by default the last one decided on), waiting until `deadline` (fixed-rate
        ticks) or until one arrives (or `stop`)."""
        ring, after = self.capture.ring, self.last_seq if after is None else after
        while not stop.is_set():
            timeout = 0.25 if deadline is None else max(0.0, deadline - time.monotonic())
            frame = ring.wait_newer(after, timeout)
            if frame is not None or deadline is not None or ring.closed:
                return frame
        return None

    def exhausted(self, last_seq: int | None = None) -> bool:
        """The source has ended and every frame it gave was used; raises the capture thread's error if it stopped on one."""
        ring = self.capture.ring
        if ring.closed and ring.newest_seq <= (self.last_seq if last_seq is None else last_seq):
            if ring.error is not None:
                raise ring.error
            return True
        return False

    def first(self, frame: RingFrame) -> bool:
        """Whether the agent's memory of this stream starts afresh at `frame`: a new episode, or a live source silent
        for longer than `max_gap_s`."""
        gap = self.last is not None and frame.t_capture - self.last.t_capture > self.max_gap_s
        return frame.first or (self.source.live and gap)

    def tick(self, frame: RingFrame, decision: Decision, classes: list[str], now: float, first: bool,
             image: np.ndarray | None) -> Tick:
        s = self.stats
        s.frames += 1
        s.skipped += frame.skipped
        s.resets += first
        s.latency_ms.add((now - frame.t_capture) * 1000.0)
        self.last = frame
        self.last_tick = Tick(frame.seq, frame.t_capture, now, (now - frame.t_capture) * 1000.0, decision.class_id,
                              classes[decision.class_id], decision.probs.tolist(), frame.skipped, False, first, image,
                              decision.label, frame.reward)
        return self.last_tick

    def stale_tick(self) -> Tick:
        """The last decision again, for a fixed-rate tick that found no new frame."""
        self.stats.stale += 1
        return Tick(**{**self.last_tick.__dict__, "t_decision": time.monotonic(), "skipped": 0, "stale": True,
                       "image": None, "reward": 0.0})

    def emit(self, tick: Tick) -> bool:
        """Hand `tick` to the sinks; True when one of them has finished the run."""
        self.stats.ticks += 1
        finished = False
        for sink in self.sinks:
            sink(tick)
            finished = finished or sink.finished
        return finished

    def close_sinks(self) -> None:
        if not self._sinks_closed:
            self._sinks_closed = True
            for sink in self.sinks:
                sink.close()

    def summary(self, elapsed: float, mode: str) -> dict:
        s, cap = self.stats, self.capture.stats
        lat = s.latency_ms.percentiles(50, 99)
        return {
            "source": self.source.name, "mode": mode, "ticks": s.ticks, "frames": s.frames, "stale": s.stale,
            "captured": cap.captured, "skipped": s.skipped, "unread": cap.captured - s.frames - s.skipped,
            "resets": s.resets, "reconnects": cap.reconnects, "elapsed_s": round(elapsed, 3),
            "fps": round(s.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms_p50": lat[0], "latency_ms_p99": lat[1], "model_ms_p50": s.model_ms.percentiles(50)[0],
            "latency_is": self.latency_is, **self.source.summary(),
        }

    def sink_summary(self) -> dict:
        out: dict = {}
        for sink in self.sinks:
            out.update(sink.summary())
        return out
