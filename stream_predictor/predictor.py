"""Predictor: the inference thread. The ring's only reader; it owns the model and the FeatureRing.

Each frame handed over by the ring is used once: preprocess → encode (the CNN, once) → FeatureRing
→ temporal step → Tick → sinks.

Modes:
- `stateful`: the LSTM is stepped by one frame per tick from its carried state: O(1) work per tick.
  It matches the offline `model(clip)` over everything seen since the last reset.
- `windowed`: the LSTM runs from zero state over the last N cached features (no frame is encoded
  twice), matching `model(last N frames)[:, -1]` and models trained on windows. Warm-up: before N
  frames have arrived, it runs over the n < N frames there are, i.e. `model(first n frames)[:, -1]`.
  After a reset (a new episode, or a gap), the window starts empty again.

With `tick_hz`, ticks come at a fixed rate: each takes the newest unseen frame, and a tick that
finds none repeats the last decision with `stale: true`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .capture import CaptureThread
from .config import Config
from .errors import UserError
from .model.fast import TickEngine
from .model.stream_model import StreamModel
from .ring import RingFrame
from .smoothing import ema, hysteresis
from .sources import Source, open_source


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
    image: np.ndarray | None = field(default=None, repr=False)  # the frame (BGR uint8), only with keep_frames

    def to_json(self) -> dict:
        return {"seq": self.seq, "t_capture": round(self.t_capture, 6), "t_decision": round(self.t_decision, 6),
                "latency_ms": round(self.latency_ms, 3), "class_id": self.class_id, "class": self.class_name,
                "probs": [round(p, 6) for p in self.probs], "skipped": self.skipped, "stale": self.stale}


class FeatureRing:
    """The last N encoded frames, (N, D), preallocated; `window()` gives them oldest first."""

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.buf = torch.zeros(size, dim, device=device)
        self.seqs = np.full(size, -1, np.int64)
        self.size, self.count, self._next = size, 0, 0

    def push(self, seq: int, feat: torch.Tensor) -> None:
        self.buf[self._next] = feat
        self.seqs[self._next] = seq
        self._next = (self._next + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def window(self) -> torch.Tensor:
        """(n, D) with n = min(count, N), oldest first."""
        if self.count < self.size:
            return self.buf[: self.count]
        return torch.cat([self.buf[self._next :], self.buf[: self._next]])

    def clear(self) -> None:
        self.count, self._next = 0, 0
        self.seqs[:] = -1


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
    """`with Predictor(model, source) as p: for tick in p: …` — or `p.run()`, or `p.start()` for a background thread."""

    def __init__(self, model: StreamModel, source: str | Source, mode: str = "stateful", replay: str = "lockstep",
                 window: int = 16, tick_hz: float = 0.0, ema: float = 0.0, hysteresis: float = 0.0,
                 sinks: Sequence = (), ring_size: int = 32, threads: int = 1, max_frames: int = 0,
                 max_gap_s: float = 1.0, config: Config | None = None, keep_frames: bool = False) -> None:
        if mode not in ("stateful", "windowed"):
            raise UserError(f"predict mode must be stateful or windowed, got '{mode}'")
        if window < 1:
            raise UserError(f"predict window must be at least 1, got {window}")
        self.cfg = config or Config()
        self.model = model.eval()
        self.device = model.head.weight.device
        self.mode, self.window_size, self.tick_hz = mode, window, tick_hz
        self.ema_alpha, self.margin = ema, hysteresis
        self.sinks = list(sinks)
        self.threads, self.max_gap_s = threads, max_gap_s
        self.keep_frames = keep_frames  # copy each frame into its Tick (for sinks that record what the agent saw)
        self.source = open_source(source, self.cfg.source) if isinstance(source, str) else source
        c = self.cfg.source
        self.capture = CaptureThread(self.source, ring_size, replay, max_frames, c.reconnect_max, c.reconnect_backoff_s)
        self.features = FeatureRing(window, model.feature_dim, self.device)
        p = self.cfg.predict
        # Windowed mode runs the LSTM over cached features itself: the engine only encodes.
        self.engine = TickEngine(model, 1, p.dtype, p.graph if self.device.type == "cuda" else False, p.fast_cpu,
                                 step=mode == "stateful")
        self.stats = PredictorStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._t_end = 0.0

    @classmethod
    def from_config(cls, model: StreamModel, cfg: Config, source: str | Source | None = None, sinks: Sequence = (),
                    max_frames: int = 0, keep_frames: bool = False) -> Predictor:
        p = cfg.predict
        mode = model.trained.get("mode", "stateful") if p.mode == "auto" else p.mode
        window = p.window or model.trained.get("seq_len", 16)
        return cls(model, source if source is not None else cfg.source.spec, mode, cfg.replay, window, p.tick_hz,
                   p.ema, p.hysteresis, sinks, cfg.source.ring_size, p.threads, max_frames, p.max_gap_s, cfg, keep_frames)

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Predictor:
        if self.threads > 0:
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
        for sink in self.sinks:
            getattr(sink, "close", lambda: None)()
        self.sinks = []
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
        model, ring = self.model, self.capture.ring
        self.engine.reset()
        last_seq, last_t, last_tick = -1, None, None
        probs_prev: np.ndarray | None = None
        period = 1.0 / self.tick_hz if self.tick_hz > 0 else 0.0
        next_tick = time.monotonic() + period
        with torch.inference_mode():
            while not self._stop.is_set():
                if period:
                    self._stop.wait(max(0.0, next_tick - time.monotonic()))
                    next_tick = max(next_tick + period, time.monotonic())
                frame = self._next_frame(last_seq, time.monotonic() if period else None)
                if frame is None:
                    if ring.closed and ring.newest_seq <= last_seq:
                        if ring.error is not None:
                            raise ring.error
                        break
                    if period and last_tick is not None:
                        tick = Tick(**{**last_tick.__dict__, "t_decision": time.monotonic(), "skipped": 0, "stale": True,
                                       "image": None})
                        self.stats.stale += 1
                        yield self._emit(tick)
                    continue
                # A new episode, or a live source silent for too long: start the recurrent state afresh.
                first = frame.first or (self.source.live and last_t is not None and frame.t_capture - last_t > self.max_gap_s)
                last_seq, last_t = frame.seq, frame.t_capture

                t0 = time.perf_counter()
                if first:
                    probs_prev = None
                    self.features.clear()
                    self.stats.resets += 1
                # The frame goes straight from the ring slot into the engine's buffer: the only copy.
                self.engine.submit(frame.image, [first])
                image = frame.image.copy() if self.keep_frames else None
                ring.release()  # the pixels are no longer needed; the writer may reuse the slot
                if self.mode == "stateful":
                    probs = self.engine.result()[0][0]
                else:
                    self.features.push(frame.seq, self.engine.features[0].float())
                    probs = torch.softmax(model.window(self.features.window()[None])[0].float(), 0).cpu().numpy()
                t1 = time.perf_counter()

                probs = ema(probs_prev, probs, self.ema_alpha)
                probs_prev = probs
                class_id = hysteresis(None if first or last_tick is None else last_tick.class_id, probs, self.margin)
                now = time.monotonic()
                tick = Tick(frame.seq, frame.t_capture, now, (now - frame.t_capture) * 1000.0, class_id,
                            model.classes[class_id], probs.tolist(), frame.skipped, False, first, image)
                s = self.stats
                s.frames += 1
                s.skipped += frame.skipped
                s.latency_ms.add(tick.latency_ms)
                s.model_ms.add((t1 - t0) * 1000)
                last_tick = tick
                yield self._emit(tick)
        self._t_end = time.monotonic()

    def _emit(self, tick: Tick) -> Tick:
        self.stats.ticks += 1
        for sink in self.sinks:
            sink(tick)
        return tick

    # --- report -------------------------------------------------------------------------------------
    def summary(self) -> dict:
        s, cap = self.stats, self.capture.stats
        elapsed = (self._t_end or time.monotonic()) - self._t0
        lat = s.latency_ms.percentiles(50, 99)
        return {
            "source": self.source.name, "mode": self.mode, "ticks": s.ticks, "frames": s.frames, "stale": s.stale,
            "captured": cap.captured, "skipped": s.skipped, "unread": cap.captured - s.frames - s.skipped,
            "resets": s.resets, "reconnects": cap.reconnects, "elapsed_s": round(elapsed, 3),
            "fps": round(s.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms_p50": lat[0], "latency_ms_p99": lat[1],
            "model_ms_p50": s.model_ms.percentiles(50)[0],
            **({"unreadable": len(self.source.unreadable)} if hasattr(self.source, "unreadable") else {}),
        }
