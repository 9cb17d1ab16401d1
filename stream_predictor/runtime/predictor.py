"""Predictor: the inference thread. The ring's only reader; it owns the agent that decides.

Each frame handed over by the ring is used once: the agent decides (for a model: preprocess → encode,
the CNN once → temporal step, stateful or windowed, in the TickEngine → smoothing) → Tick → sinks.

With `tick_hz`, ticks come at a fixed rate: each takes the newest unseen frame, and a tick that
finds none repeats the last decision with `stale: true`. A new episode, or a live source silent for
longer than `max_gap_s`, starts the agent's memory afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..config import Config
from ..sources import Source, open_source
from .agent import Agent, Decision, resolve_mode
from .backends import model_agent
from .capture import CaptureThread
from .ring import RingFrame
from .tick import CallbackSink, Sink, Tick, Timings

if TYPE_CHECKING:  # torch is imported only for a torch model: an exported graph's agent runs without it
    from ..model.stream_model import StreamModel

__all__ = ["Predictor", "PredictorStats", "Tick"]


@dataclass
class PredictorStats:
    ticks: int = 0
    frames: int = 0  # frames processed (encoded once each)
    stale: int = 0
    skipped: int = 0
    resets: int = 0
    latency_ms: Timings = field(default_factory=Timings)
    model_ms: Timings = field(default_factory=Timings)  # preprocess → encode → step → probabilities


class Predictor:
    """`with Predictor(model, source) as p: for tick in p: …` — or `p.run()`, or `p.start()` for a background thread.

    `model` is a StreamModel (decided through a `ModelAgent` in `mode`, with `window`, `ema` and
    `hysteresis`) or any `Agent`. `keep_frames` puts each frame into its Tick; it is on by itself when
    a sink `needs_frames`.
    """

    def __init__(self, model: StreamModel | Agent, source: str | Source, mode: str = "stateful", replay: str = "lockstep",
                 window: int = 16, tick_hz: float = 0.0, ema: float = 0.0, hysteresis: float = 0.0,
                 sinks: Sequence[Sink | Callable[[Tick], None]] = (), ring_size: int = 32, threads: int = 1, max_frames: int = 0,
                 max_gap_s: float = 1.0, config: Config | None = None, keep_frames: bool = False) -> None:
        self.cfg = config or Config()
        p = self.cfg.predict
        if isinstance(model, Agent):
            self.agent = model
        else:
            self.agent = model_agent(model.eval(), replace(p, ema=ema, hysteresis=hysteresis), mode, window)
        self.mode = self.agent.kind
        self.tick_hz = tick_hz
        self.sinks = [s if isinstance(s, Sink) else CallbackSink(s) for s in sinks]  # a plain function is a sink too
        self.threads, self.max_gap_s = threads, max_gap_s
        self.keep_frames = keep_frames or any(s.needs_frames for s in self.sinks)
        self.source = open_source(source, self.cfg.source) if isinstance(source, str) else source
        self.chunk, self.replay_path = self._chunking(replay, p.chunk)
        ring_size = max(ring_size, self.chunk + 1)  # the capture thread decodes the next chunk while this one is encoded
        self.capture = CaptureThread.configured(self.source, self.cfg.source, ring_size, replay, max_frames)
        self.stats = PredictorStats()
        view = self.agent.model.preproc.view if self.agent.model is not None else None
        for sink in self.sinks:
            sink.attach(view, lambda: {"reconnects": self.capture.stats.reconnects, **self.source.status(), **self.agent.status()})
        self.error: BaseException | None = None
        self._sinks_closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._t_end = 0.0

    @classmethod
    def from_config(cls, model: StreamModel | Agent, cfg: Config, source: str | Source | None = None,
                    sinks: Sequence[Sink] = (), max_frames: int = 0, keep_frames: bool = False,
                    replay: str | None = None) -> Predictor:
        """Every setting from `cfg` (`replay` overrides `cfg.replay`); the mode and window as `resolve_mode` says."""
        p = cfg.predict
        mode, window = ("stateful", 16) if isinstance(model, Agent) else resolve_mode(model, p)
        return cls(model, source if source is not None else cfg.source.spec, mode, replay or cfg.replay, window, p.tick_hz,
                   p.ema, p.hysteresis, sinks, cfg.source.ring_size, p.threads, max_frames, p.max_gap_s, cfg, keep_frames)

    def _chunking(self, replay: str, chunk: int) -> tuple[int, str]:
        """Frames decided per call (1: one per tick) and why: recorded video in lockstep goes in chunks wherever that
        cannot change a decision."""
        reasons = [why for bad, why in (
            (chunk <= 1, "predict.chunk is off"), (self.source.live, "a live source"),
            (replay != "lockstep", f"replay={replay}"), (self.tick_hz > 0, "fixed-rate ticks"),
            (self.source.reactive, "the source waits for each decision"),
            (any(s.acts for s in self.sinks), "a sink acts on the world"),
            (not self.agent.chunked, "the agent decides one frame at a time")) if bad]
        if reasons:
            return 1, f"one frame per tick ({'; '.join(reasons)})"
        return chunk, f"chunked ({chunk} frames per CNN call)"

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Predictor:
        if self.threads > 0 and self.agent.model is not None:  # torch decides
            import torch

            torch.set_num_threads(self.threads)
        self._t0 = time.monotonic()
        self.capture.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 2.0) -> None:
        """Stop both threads (joined with a timeout), release the source, close the sinks. Idempotent."""
        self._stop.set()
        self.capture.close(timeout)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._sinks_closed:
            self._sinks_closed = True
            for sink in self.sinks:
                sink.close()
        self._t_end = self._t_end or time.monotonic()

    def stop(self) -> None:
        """Ask the inference loop to finish after the current tick (safe from a sink, i.e. from inside the loop)."""
        self._stop.set()

    def start(self) -> Predictor:
        """Run the inference loop on its own thread; `join()` waits and re-raises its error."""
        self.__enter__()
        self._thread = threading.Thread(target=self._run_thread, name="inference", daemon=True)
        self._thread.start()
        return self

    def _run_thread(self) -> None:
        try:
            for _ in self._ticks():
                pass
        except BaseException as e:
            self.error = e
            self.capture.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the inference thread; True when it has finished. Raises the error it stopped on."""
        assert self._thread is not None, "join() needs start()"
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return not self._thread.is_alive()

    def run(self) -> dict:
        """Process the whole stream in this thread and return the summary."""
        for _ in self:
            pass
        return self.summary()

    def __iter__(self) -> Iterator[Tick]:
        return self._ticks()

    # --- the loop --------------------------------------------------------------------------------
    def _next_frame(self, last_seq: int, deadline: float | None) -> RingFrame | None:
        """The next frame to use, waiting until `deadline` (fixed-rate ticks) or until one arrives."""
        ring = self.capture.ring
        while not self._stop.is_set():
            timeout = 0.25 if deadline is None else max(0.0, deadline - time.monotonic())
            frame = ring.wait_newer(last_seq, timeout)
            if frame is not None or deadline is not None or ring.closed:
                return frame
        return None

    def _ticks(self) -> Iterator[Tick]:
        if self.chunk > 1:
            yield from self._chunked_ticks()
            return
        self.agent.reset()
        last: RingFrame | None = None
        last_tick: Tick | None = None
        period = 1.0 / self.tick_hz if self.tick_hz > 0 else 0.0
        next_tick = time.monotonic() + period
        with self.agent.inference():
            while not self._stop.is_set():
                if period:  # fixed-rate ticks: wait for the next slot, never bunching up to catch up
                    self._stop.wait(max(0.0, next_tick - time.monotonic()))
                    next_tick = max(next_tick + period, time.monotonic())
                frame = self._next_frame(-1 if last is None else last.seq, time.monotonic() if period else None)
                if frame is not None:
                    last_tick = self._decide(frame, last)
                    last = frame
                    yield self._emit(last_tick)
                elif self.capture.ring.closed and self.capture.ring.newest_seq <= (-1 if last is None else last.seq):
                    if self.capture.ring.error is not None:
                        raise self.capture.ring.error
                    break
                elif period and last_tick is not None:
                    self.stats.stale += 1
                    yield self._emit(Tick(**{**last_tick.__dict__, "t_decision": time.monotonic(), "skipped": 0,
                                             "stale": True, "image": None}))
        self._t_end = time.monotonic()

    def _chunked_ticks(self) -> Iterator[Tick]:
        """Lockstep replay in chunks: each frame handed over is copied out of the ring (which the capture thread goes on
        filling), every `chunk` frames are decided in one call, and their ticks come out one per frame, in order."""
        self.agent.reset()
        ring, last, frames, buf = self.capture.ring, -1, [], None
        with self.agent.inference():
            while not self._stop.is_set():
                frame = self._next_frame(last, None)
                if frame is not None:
                    if buf is None or buf.shape[1:] != frame.image.shape:
                        yield from self._decide_chunk(buf, frames)
                        buf, frames = np.empty((self.chunk, *frame.image.shape), np.uint8), []
                    buf[len(frames)] = frame.image
                    ring.release()
                    frames.append(frame)
                    last = frame.seq
                if frame is None or len(frames) == self.chunk:
                    yield from self._decide_chunk(buf, frames)
                    frames = []
                if frame is None and ring.closed:
                    if ring.error is not None:
                        raise ring.error
                    break
        self._t_end = time.monotonic()

    def _decide_chunk(self, buf: np.ndarray | None, frames: list[RingFrame]) -> Iterator[Tick]:
        if not frames or self._stop.is_set():
            return
        n = len(frames)
        t0 = time.perf_counter()
        decisions = self.agent.decide_chunk(buf[:n], np.array([f.first for f in frames]))
        per_frame_ms = (time.perf_counter() - t0) * 1000 / n
        now = time.monotonic()
        for i, (frame, decision) in enumerate(zip(frames, decisions)):
            self.stats.model_ms.add(per_frame_ms)
            yield self._emit(self._tick(frame, decision, now, frame.first, buf[i].copy() if self.keep_frames else None))
            if self._stop.is_set():
                return

    def _tick(self, frame: RingFrame, decision: Decision, now: float, first: bool, image: np.ndarray | None) -> Tick:
        s = self.stats
        s.frames += 1
        s.skipped += frame.skipped
        s.resets += first
        s.latency_ms.add((now - frame.t_capture) * 1000.0)
        return Tick(frame.seq, frame.t_capture, now, (now - frame.t_capture) * 1000.0, decision.class_id,
                    self.agent.classes[decision.class_id], decision.probs.tolist(), frame.skipped, False, first, image)

    def _decide(self, frame: RingFrame, previous: RingFrame | None) -> Tick:
        """The agent's decision on a frame handed over by the ring, as a Tick; the ring slot is released here."""
        gap = previous is not None and frame.t_capture - previous.t_capture > self.max_gap_s
        first = frame.first or (self.source.live and gap)
        t0 = time.perf_counter()
        decision = self.agent.decide(frame.image, first)
        t1 = time.perf_counter()
        image = frame.image.copy() if self.keep_frames else None
        self.capture.ring.release()  # the pixels are no longer needed; the writer may reuse the slot
        self.stats.model_ms.add((t1 - t0) * 1000)
        return self._tick(frame, decision, time.monotonic(), first, image)

    def _emit(self, tick: Tick) -> Tick:
        self.stats.ticks += 1
        for sink in self.sinks:
            sink(tick)
            if sink.finished:
                self._stop.set()
        return tick

    # --- report -------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The run's figures, with each sink's and the source's own."""
        s, cap = self.stats, self.capture.stats
        elapsed = (self._t_end or time.monotonic()) - self._t0
        lat = s.latency_ms.percentiles(50, 99)
        out = {
            "source": self.source.name, "mode": self.mode, "ticks": s.ticks, "frames": s.frames, "stale": s.stale,
            "captured": cap.captured, "skipped": s.skipped, "unread": cap.captured - s.frames - s.skipped,
            "resets": s.resets, "reconnects": cap.reconnects, "elapsed_s": round(elapsed, 3),
            "fps": round(s.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms_p50": lat[0], "latency_ms_p99": lat[1], "model_ms_p50": s.model_ms.percentiles(50)[0],
            "replay": self.replay_path,
            **self.source.summary(), **self.agent.describe(),
        }
        for sink in self.sinks:
            out.update(sink.summary())
        return out
