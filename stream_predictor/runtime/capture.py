"""CaptureThread: source → FrameRing. The ring's only writer.

Live sources (camera, stream, screen) are read as fast as they deliver, into a lossy ring.
Finite and generated sources follow `replay`:
- `lockstep`: every frame, in order, exactly once; the thread waits for ring space instead of dropping.
- `realtime`: paced at the source's fps on a drift-free schedule, dropping frames behind a slow reader.
A live source whose reads fail is reopened with exponential backoff; no fake frame is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import SourceConfig
from ..errors import ReadError, UserError
from ..sources.base import Source
from .ring import FrameRing, RingFrame

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    ring: FrameRing
    captured: int = 0  # frames written to the ring
    reconnects: int = 0
    elapsed_s: float = 0.0

    @property
    def skipped(self) -> int:
        """Frames overwritten before the reader saw them."""
        return self.ring.skipped

    @property
    def fps(self) -> float:
        return self.captured / self.elapsed_s if self.elapsed_s > 0 else 0.0


class CaptureThread:
    def __init__(self, source: Source, ring_size: int = 32, replay: str = "lockstep", max_frames: int = 0,
                 reconnect_max: int = 10, reconnect_backoff_s: float = 0.5, reconnect_backoff_max_s: float = 5.0) -> None:
        if replay not in ("lockstep", "realtime"):
            raise UserError(f"replay must be lockstep or realtime, got '{replay}'")
        self.source = source
        self.lockstep = replay == "lockstep" and not source.live
        self.ring = FrameRing(ring_size, lossless=self.lockstep)
        # Pace finite sources in realtime at their fps; cap live ones only if asked (screen grabs).
        rate = source.fps_cap if source.live else (0.0 if self.lockstep else source.fps)
        self.period = 1.0 / rate if rate and rate > 0 else 0.0
        self.max_frames = max_frames
        self.reconnect_max, self.backoff_s, self.backoff_max_s = reconnect_max, reconnect_backoff_s, reconnect_backoff_max_s
        self.stats = CaptureStats(self.ring)
        self.events: list[tuple[float, str]] = []  # (monotonic time, what happened) for reconnects
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._started = 0.0
        self._closed = False

    @classmethod
    def configured(cls, source: Source, cfg: SourceConfig, ring_size: int, replay: str, max_frames: int = 0) -> CaptureThread:
        """A capture thread with the reconnect settings of the `source` config section."""
        return cls(source, ring_size, replay, max_frames, cfg.reconnect_max, cfg.reconnect_backoff_s, cfg.reconnect_backoff_max_s)

    def start(self) -> CaptureThread:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._loop()
        except BaseException as e:  # surfaced to the reader through the ring
            log.debug("capture thread failed", exc_info=True)
            error = e
        finally:
            self.stats.elapsed_s = time.monotonic() - self._started
            self.ring.close(error)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            if self.max_frames and self.stats.captured >= self.max_frames:
                return
            if self.lockstep and not self.ring.wait_space():
                return
            if self.period:
                # Drift-free pacing: the schedule advances by one period per frame, not from "now".
                delay = next_t - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                next_t = max(next_t + self.period, time.monotonic() - self.period)
            slot = self.ring.claim()
            frame = self._read(None if slot is None else slot[1])
            if frame is None:
                return
            self.ring.write(frame, slot)
            self.stats.captured += 1
            self.stats.elapsed_s = time.monotonic() - self._started

    def _read(self, out):
        failures = 0
        while not self._stop.is_set():
            try:
                return self.source.read(out)
            except ReadError as e:
                failures += 1
                if failures > self.reconnect_max:
                    raise UserError(f"{self.source.name}: gave up after {self.reconnect_max} reconnects ({e})") from None
                delay = min(self.backoff_s * 2 ** (failures - 1), max(self.backoff_s, self.backoff_max_s))
                self._event(f"read failed ({e}); reconnecting in {delay:.2f}s")
                if self._stop.wait(delay):
                    return None
                try:
                    self.source.reopen()
                    self.stats.reconnects += 1
                    self._event("reconnected")
                except UserError as e2:
                    self._event(f"reconnect failed ({e2})")
        return None

    def _event(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        log.warning("%s: %s", self.source.name, what)

    def frames(self, seconds: float | None = None) -> Iterator[RingFrame]:
        """Each frame the ring hands over, until the stream ends (re-raising a capture error) or `seconds` pass."""
        deadline = None if seconds is None else time.monotonic() + seconds
        last = -1
        while deadline is None or time.monotonic() < deadline:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            frame = self.ring.wait_newer(last, wait)
            if frame is None:
                if self.ring.closed:
                    if self.ring.error is not None:
                        raise self.ring.error
                    return
                continue
            last = frame.seq
            yield frame

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """Stop, wake every waiter, join (with a timeout) and release the source. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        self.source.interrupt()
        self.ring.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.source.close()
            self._closed = True
        else:
            log.warning("capture thread did not stop within %.1fs", timeout)

    def __enter__(self) -> CaptureThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
