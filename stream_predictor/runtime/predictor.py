"""Predictor: the inference thread, the one decision loop, for one stream (`Predictor`) or K (`MultiPredictor`).

Each stream has its own capture thread and ring (`Stream`); the Predictor is the rings' only reader and owns the
agent that decides. Each frame handed over is used once: the agent decides (for a model: preprocess → encode, the CNN
once → temporal step, stateful or windowed → smoothing, per stream) → Tick → that stream's sinks. K streams are
decided in one call per tick (one engine call, on CUDA one graph replay), each keeping its own state, smoothing,
figures and sinks, exactly as if it ran alone.

With `tick_hz`, ticks come at a fixed rate: each takes the newest unseen frame, and a tick that finds none repeats
the stream's last decision with `stale: true`. A new episode, or a live source silent for longer than `max_gap_s`,
starts that stream's memory afresh. Recorded video in lockstep (one stream) is decided in chunks where that cannot
change a decision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..config import Config
from ..errors import UserError
from ..sources import Source, open_source
from .agent import Agent, Decision, resolve_mode
from .backends import model_agent
from .ring import RingFrame
from .stream import PredictorStats, Stream
from .tick import CallbackSink, Sink, Tick

if TYPE_CHECKING:  # torch is imported only for a torch model: an exported graph's agent runs without it
    from ..model.stream_model import StreamModel

__all__ = ["MultiPredictor", "Predictor", "PredictorStats", "Tick"]

SinkLike = Sink | Callable[[Tick], None]


class Predictor:
    """`with Predictor(model, source) as p: for tick in p: …` — or `p.run()`, or `p.start()` for a background thread.

    Every setting comes from `config` (`Config()` by default); a keyword given here overrides it for this run: `mode`,
    `window`, `ema`, `hysteresis`, `tick_hz`, `threads`, `max_gap_s` (predict.*), `replay`, `ring_size`. `model` is a
    StreamModel (decided through its agent, `backends.model_agent`) or any `Agent`. `keep_frames` puts each frame into
    its Tick; it is on by itself when a sink `needs_frames`.
    """

    def __init__(self, model: StreamModel | Agent, source: str | Source, mode: str | None = None, replay: str | None = None,
                 *, config: Config | None = None, sinks: Sequence[SinkLike] = (), max_frames: int = 0,
                 keep_frames: bool = False, **settings: object) -> None:
        settings.update(mode=mode, replay=replay)
        self._setup(model, [source], [sinks], config, max_frames, keep_frames, settings)
        self.capture, self.source, self.sinks, self.stats = (self.streams[0].capture, self.streams[0].source,
                                                             self.streams[0].sinks, self.streams[0].stats)

    @classmethod
    def from_config(cls, model: StreamModel | Agent, cfg: Config, source: str | Source | None = None,
                    sinks: Sequence[Sink] = (), max_frames: int = 0, keep_frames: bool = False,
                    replay: str | None = None) -> Predictor:
        """Every setting from `cfg` (`replay` overrides `cfg.replay`); the source `cfg.source.spec` unless given."""
        return cls(model, source if source is not None else cfg.source.spec, config=cfg, sinks=sinks,
                   max_frames=max_frames, keep_frames=keep_frames, **({"replay": replay} if replay else {}))

    def _setup(self, model: StreamModel | Agent, sources: Sequence[str | Source], sinks: Sequence[Sequence[SinkLike]],
               config: Config | None, max_frames: int, keep_frames: bool, settings: dict) -> None:
        self.cfg = settings_config(config or Config(), settings)
        p = self.cfg.predict
        if isinstance(model, Agent):
            self.agent = model
        else:
            mode, window = resolve_mode(model, p)
            self.agent = model_agent(model.eval(), p, mode, window, streams=len(sources))
        self.mode, self.tick_hz, self.threads = self.agent.kind, p.tick_hz, p.threads
        opened = [open_source(s, self.cfg.source) if isinstance(s, str) else s for s in sources]
        sinks = [[s if isinstance(s, Sink) else CallbackSink(s) for s in ss] for ss in sinks]  # a function is a sink too
        self.chunk, self.replay_path = self._chunking(opened, sinks, self.cfg.replay, p.chunk)
        ring_size = max(self.cfg.source.ring_size, self.chunk + 1)  # the next chunk is decoded while one is encoded
        view = self.agent.model.preproc.view if self.agent.model is not None else None
        self.streams = [Stream(src, self.cfg, snk, ring_size, max_frames, keep_frames, view, self.agent.status)
                        for src, snk in zip(opened, sinks)]
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._t_end = 0.0

    def _chunking(self, sources: list[Source], sinks: list[list[Sink]], replay: str, chunk: int) -> tuple[int, str]:
        """Frames decided per call (1: one per tick) and why: recorded video in lockstep goes in chunks wherever that
        cannot change a decision."""
        reasons = [why for bad, why in (
            (chunk <= 1, "predict.chunk is off"), (len(sources) > 1, "several streams"),
            (any(s.live for s in sources), "a live source"),
            (replay != "lockstep", f"replay={replay}"), (self.tick_hz > 0, "fixed-rate ticks"),
            (any(s.reactive for s in sources), "the source waits for each decision"),
            (any(s.acts for ss in sinks for s in ss), "a sink acts on the world"),
            (not self.agent.chunked, "the agent decides one frame at a time")) if bad]
        if reasons:
            return 1, f"one frame per tick ({'; '.join(reasons)})"
        return chunk, f"chunked ({chunk} frames per CNN call)"

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Predictor:
        self._t0 = time.monotonic()
        for stream in self.streams:
            stream.capture.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the inference and capture threads (joined with a timeout), release the sources, close the sinks.
        Idempotent."""
        self._stop.set()
        for stream in self.streams:
            stream.capture.close(timeout)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for stream in self.streams:
            stream.close_sinks()
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
            for _ in self._loop():
                pass
        except BaseException as e:
            self.error = e
            for stream in self.streams:
                stream.capture.close()

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
        for ticks in self._loop():
            yield ticks[0]

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> Iterator[list[Tick | None]]:
        """Each round: every stream's tick (None for a stream with nothing to say), decided in one agent call."""
        from .threads import torch_threads

        with torch_threads(self.threads if self.agent.model is not None else 0), self.agent.inference():
            self.agent.reset()
            if self.chunk > 1:
                yield from ([t] for t in self._chunked_ticks())
            else:
                yield from self._ticks()
        self._t_end = time.monotonic()

    def _ticks(self) -> Iterator[list[Tick | None]]:
        period = 1.0 / self.tick_hz if self.tick_hz > 0 else 0.0
        next_tick = time.monotonic() + period
        batch: np.ndarray | None = None
        while not self._stop.is_set():
            if period:  # fixed-rate ticks: wait for the next slot, never bunching up to catch up
                self._stop.wait(max(0.0, next_tick - time.monotonic()))
                next_tick = max(next_tick + period, time.monotonic())
            deadline = time.monotonic() if period else None
            frames = [None if s.ended else s.next_frame(self._stop, deadline) for s in self.streams]
            for stream, frame in zip(self.streams, frames):
                if frame is None and not stream.ended and stream.exhausted():
                    stream.ended = True
            if all(s.ended for s in self.streams) or self._stop.is_set():
                break
            decisions, firsts, model_ms = [None] * len(frames), [False] * len(frames), 0.0
            if any(f is not None for f in frames):
                batch = self._batch(batch, frames)
                firsts = [s.first(f) if f is not None else False for s, f in zip(self.streams, frames)]
                t0 = time.perf_counter()
                # an ended stream's slot is decided on again and not reported (its state no longer matters); a live
                # one without a new frame is left out, its state kept
                decisions = self.agent.decide_batch(batch, firsts, [f is not None or s.ended
                                                                    for s, f in zip(self.streams, frames)])
                model_ms = (time.perf_counter() - t0) * 1000
                for stream, frame in zip(self.streams, frames):
                    if frame is not None:
                        stream.capture.ring.release()  # the pixels are in the batch: the writer may reuse the slot
            now = time.monotonic()
            ticks = [self._tick_of(i, frames[i], decisions[i], firsts[i], model_ms, batch, now)
                     for i in range(len(self.streams))]
            if any(t is not None for t in ticks):
                yield ticks

    def _batch(self, batch: np.ndarray | None, frames: list[RingFrame | None]) -> np.ndarray:
        """The K streams' newest frames in one (K, H, W, 3) array; a stream without a new frame keeps its last one."""
        shape = next(f.image.shape for f in frames if f is not None)
        if batch is None or batch.shape[1:] != shape:
            if batch is not None and len(self.streams) > 1:
                raise_sizes(self.streams, frames, batch.shape[1:])
            batch = np.zeros((len(self.streams), *shape), np.uint8)
        for i, f in enumerate(frames):
            if f is not None:
                if f.image.shape != shape:
                    raise_sizes(self.streams, frames, shape)
                batch[i] = f.image
        return batch

    def _tick_of(self, i: int, frame: RingFrame | None, decision: Decision | None, first: bool, model_ms: float,
                 batch: np.ndarray, now: float) -> Tick | None:
        stream = self.streams[i]
        if frame is not None:
            stream.stats.model_ms.add(model_ms)
            image = batch[i].copy() if stream.keep_frames else None
            tick = stream.tick(frame, decision, self.agent.classes, now, first, image)
        elif self.tick_hz > 0 and not stream.ended and stream.last_tick is not None:
            tick = stream.stale_tick()
        else:
            return None
        if stream.emit(tick):
            self._stop.set()
        return tick

    def _chunked_ticks(self) -> Iterator[Tick]:
        """Lockstep replay in chunks: each frame handed over is copied out of the ring (which the capture thread goes on
        filling), every `chunk` frames are decided in one call, and their ticks come out one per frame, in order."""
        stream = self.streams[0]
        ring, last, frames, buf = stream.capture.ring, -1, [], None
        while not self._stop.is_set():
            frame = stream.next_frame(self._stop, None, last)
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
            if frame is None and stream.exhausted(last):
                break

    def _decide_chunk(self, buf: np.ndarray | None, frames: list[RingFrame]) -> Iterator[Tick]:
        if not frames or self._stop.is_set():
            return
        stream, n = self.streams[0], len(frames)
        t0 = time.perf_counter()
        decisions = self.agent.decide_chunk(buf[:n], np.array([f.first for f in frames]))
        per_frame_ms = (time.perf_counter() - t0) * 1000 / n
        now = time.monotonic()
        for i, (frame, decision) in enumerate(zip(frames, decisions)):
            stream.stats.model_ms.add(per_frame_ms)
            tick = stream.tick(frame, decision, self.agent.classes, now, frame.first,
                               buf[i].copy() if stream.keep_frames else None)
            if stream.emit(tick):
                self._stop.set()
            yield tick
            if self._stop.is_set():
                return

    # --- report -------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The run's figures, with each sink's and the source's own."""
        elapsed = (self._t_end or time.monotonic()) - self._t0
        return {**self.streams[0].summary(elapsed, self.mode), "replay": self.replay_path, **self.agent.describe(),
                **self.streams[0].sink_summary()}


class MultiPredictor(Predictor):
    """`with MultiPredictor(model, ["cam:0", "cam:1"]) as mp: for ticks in mp: …` — `ticks[i]` is stream i's Tick, or
    None when stream i has nothing new (it ended; or, with `tick_hz`, it has no frame yet).

    The same loop as a Predictor's, for K sources: one engine call per tick decides all streams, each with its own
    recurrent state, smoothing, gap reset, figures and sinks (`sinks[i]` are stream i's). A stream that ends keeps its
    slot (its last frame stays in the batch, its state untouched, its result unreported) until all have ended.
    """

    def __init__(self, model: StreamModel | Agent, sources: Sequence[str | Source], replay: str | None = None,
                 ring_size: int | None = None, config: Config | None = None, max_frames: int = 0, *,
                 sinks: Sequence[Sequence[SinkLike]] | None = None, keep_frames: bool = False, **settings: object) -> None:
        if not sources:
            raise UserError("MultiPredictor needs at least one source")
        if sinks is not None and len(sinks) != len(sources):
            raise ValueError(f"sinks are given per stream: {len(sinks)} lists for {len(sources)} sources")
        settings.update(replay=replay, ring_size=ring_size if ring_size is not None else 8)
        self._setup(model, sources, sinks or [()] * len(sources), config, max_frames, keep_frames, settings)
        self.sources = [s.source for s in self.streams]

    @property
    def engine(self):
        """The engine deciding the K streams (one call per tick)."""
        return self.agent.engine

    def __iter__(self) -> Iterator[list[Tick | None]]:
        return self._loop()

    def summary(self) -> dict:
        """Each stream's figures (as a lone Predictor's summary), and how decisions were made."""
        elapsed = (self._t_end or time.monotonic()) - self._t0
        return {"streams": [{**s.summary(elapsed, self.mode), **s.sink_summary()} for s in self.streams],
                "replay": self.replay_path, **self.agent.describe()}


SETTINGS = {"mode": "predict", "window": "predict", "tick_hz": "predict", "ema": "predict", "hysteresis": "predict",
            "threads": "predict", "max_gap_s": "predict", "replay": None, "ring_size": "source"}


def settings_config(cfg: Config, settings: dict) -> Config:
    """`cfg` with the keyword settings of a Predictor put in their config sections (an unknown one is a TypeError)."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"unknown Predictor setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
    out = replace(cfg)
    for key, value in settings.items():
        if value is None:
            continue
        if SETTINGS[key] is None:
            out.replay = value
        else:
            section = getattr(out, SETTINGS[key])
            setattr(out, SETTINGS[key], replace(section, **{key: value}))
    return out


def raise_sizes(streams: list[Stream], frames: list[RingFrame | None], shape: tuple[int, ...]) -> None:
    bad = next(i for i, f in enumerate(frames) if f is not None and f.image.shape != shape)
    raise UserError(f"stream {bad} ({streams[bad].source.name}) has frames of {frames[bad].image.shape}, the others "
                    f"{shape}: batched streams need one frame size")
