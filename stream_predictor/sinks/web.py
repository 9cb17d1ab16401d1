"""`web` / `web:PORT`: a live page of the run, for any number of browsers, that never slows a tick.

`/` is the page: the frame beside what the model sees (after crop and resize), the class probabilities
as bars, the decisions as a strip, latency and fps as sparklines, frames skipped, resets, reconnects and,
for games, the score. Other tools can read the same data: `/ticks` (Server-Sent Events, one JSON tick
each, newest first), `/stream.mjpg` (MJPEG of the annotated frames) and `/status.json`.

The tick thread only stores the newest tick and wakes the viewers (a lock held for microseconds). Each
viewer has its own thread that builds, or reuses, the newest payload and writes it: a slow viewer skips
to the newest tick (the ticks it never got are counted as dropped), one that stops reading times out,
and one that leaves is forgotten. Nothing a viewer does reaches the tick thread.

Served with the standard library's threading HTTP server: a small always-on sink with one thread per
viewer needs nothing more, and it adds no dependency to a package people install for inference.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from ..runtime.tick import Sink, Tick

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("web.html")
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, OSError)


class WebSink(Sink):
    needs_frames = True

    def __init__(self, classes: list[str], host: str = "127.0.0.1", port: int = 8765, max_fps: float = 30.0,
                 client_timeout_s: float = 10.0, mirror: bool = False) -> None:
        self.classes, self.max_fps, self.mirror = list(classes), max_fps, mirror
        self._cond = threading.Condition()
        self._tick: Tick | None = None
        self._version = 0  # ticks received
        self._closed = False
        self._view: Callable[[np.ndarray], np.ndarray] | None = None
        self._status: Callable[[], dict] = dict
        self._payload: tuple[int, bytes] = (0, b"")  # (version, JSON) built once per version, by whichever viewer comes first
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._build = threading.Lock()  # builds a payload or a JPEG (never held by the tick thread)
        self._latency: deque[float] = deque(maxlen=300)
        self._times: deque[float] = deque(maxlen=300)
        self._history: deque[int] = deque(maxlen=400)
        self.skipped = self.resets = 0
        self.viewers = self.viewers_max = self.sent = self.dropped = self.timeouts = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            timeout = client_timeout_s  # a viewer that stops reading is dropped after this long

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                route = {"/": sink._page, "/index.html": sink._page, "/ticks": sink._events, "/stream.mjpg": sink._mjpeg,
                         "/status.json": sink._status_json}.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except GONE as e:
                    if isinstance(e, TimeoutError):
                        with sink._cond:
                            sink.timeouts += 1

            def log_message(self, *args: object) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise UserError(f"web sink: cannot listen on {host}:{port} ({e.strerror or e}); choose another port: web:PORT") from None
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="web-sink", daemon=True)
        self._thread.start()
        print(f"web view: {self.url}", file=sys.stderr, flush=True)

    # --- the tick thread -----------------------------------------------------------------------------
    def attach(self, view: Callable[[np.ndarray], np.ndarray] | None, status: Callable[[], dict]) -> None:
        self._view, self._status = view, status

    def __call__(self, tick: Tick) -> None:
        with self._cond:
            self._tick = tick
            self._version += 1
            self._latency.append(tick.latency_ms)
            self._times.append(tick.t_decision)
            self._history.append(tick.class_id)
            self.skipped += tick.skipped
            self.resets += tick.first
            self._cond.notify_all()

    # --- what the viewers get (their own threads) --------------------------------------------------------
    def _wait_newer(self, seen: int, timeout: float) -> int:
        """The newest version after `seen`, or `seen` on timeout or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen or self._closed, timeout)
            return self._version

    def _snapshot(self) -> tuple[int, bytes]:
        """The newest tick with the run's figures, as JSON bytes; built once per tick however many viewers read it."""
        with self._cond:
            version, tick = self._version, self._tick
            if self._payload[0] == version:
                return self._payload
            latency, times, history = list(self._latency), list(self._times), list(self._history)
            counters = {"ticks": version, "skipped": self.skipped, "resets": self.resets, "viewers": self.viewers,
                        "dropped": self.dropped}
        data = {"classes": self.classes, "counters": counters, "history": history, "status": self._status(),
                "latency": latency[-120:], "fps": _fps(times)}
        if tick is not None:
            lat = np.array(latency)
            data.update(tick=tick.to_json() | {"first": tick.first}, latency_p50=round(float(np.percentile(lat, 50)), 3),
                        latency_p99=round(float(np.percentile(lat, 99)), 3))
        payload = (version, json.dumps(data).encode())
        with self._cond:
            if payload[0] >= self._payload[0]:
                self._payload = payload
        return payload

    def _frame_jpeg(self, version: int) -> bytes:
        with self._build:
            if self._jpeg[0] != version:
                with self._cond:
                    tick = self._tick
                if tick is None or tick.image is None:
                    return b""
                ok, buf = cv2.imencode(".jpg", self.composite(tick.image), [cv2.IMWRITE_JPEG_QUALITY, 85])
                self._jpeg = (version, buf.tobytes() if ok else b"")
            return self._jpeg[1]

    def composite(self, image: np.ndarray) -> np.ndarray:
        """The source frame beside the model's view of it, both at one height (small frames doubled); both flipped left
        to right with `mirror` (a selfie view)."""
        h = image.shape[0] * 2 if image.shape[0] < 240 else image.shape[0]
        flip = (lambda a: np.ascontiguousarray(a[:, ::-1])) if self.mirror else (lambda a: a)
        parts = [_fit(flip(image), h)]
        if self._view is not None:
            parts += [np.full((h, 6, 3), 24, np.uint8), _fit(flip(self._view(image)), h, cv2.INTER_NEAREST)]
        return np.hstack(parts)

    def _page(self, req: BaseHTTPRequestHandler) -> None:
        body = PAGE.read_bytes()
        req.send_response(200)
        req.send_header("Content-Type", "text/html; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _status_json(self, req: BaseHTTPRequestHandler) -> None:
        body = self._snapshot()[1]
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _stream(self, req: BaseHTTPRequestHandler, content_type: str, part: Callable[[int], bytes]) -> None:
        """Send the newest item whenever there is a newer one, at most `max_fps` a second, until the viewer or the sink goes."""
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Cache-Control", "no-cache")
        req.end_headers()
        with self._cond:
            self.viewers += 1
            self.viewers_max = max(self.viewers_max, self.viewers)
            seen = self._version
        try:
            while not self._closed:
                version = self._wait_newer(seen, 5.0)
                if self._closed:
                    break
                if version == seen:
                    req.wfile.write(part(-1))  # a keep-alive: finds a vanished viewer
                    continue
                req.wfile.write(part(version))
                req.wfile.flush()
                with self._cond:  # viewers count from their own threads
                    self.dropped += version - seen - 1 if seen else 0
                    self.sent += 1
                seen = version
                time.sleep(1.0 / self.max_fps)
        finally:
            with self._cond:
                self.viewers -= 1

    def _events(self, req: BaseHTTPRequestHandler) -> None:
        def event(version: int) -> bytes:
            if version < 0:
                return b": keep-alive\n\n"
            return b"data: " + self._snapshot()[1] + b"\n\n"

        self._stream(req, "text/event-stream", event)

    def _mjpeg(self, req: BaseHTTPRequestHandler) -> None:
        def frame(version: int) -> bytes:
            jpeg = self._frame_jpeg(self._version) if version >= 0 else self._jpeg[1]
            return b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"

        self._stream(req, "multipart/x-mixed-replace; boundary=frame", frame)

    # --- the end -----------------------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"web": {"url": self.url, "viewers_max": self.viewers_max, "sent": self.sent, "dropped": self.dropped,
                        "timeouts": self.timeouts}}

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def _fit(image: np.ndarray, height: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _fps(times: list[float]) -> list[float]:
    """Ticks per second over a sliding second, at each of the last 120 ticks."""
    t = np.array(times)
    if len(t) < 2:
        return []
    starts = np.searchsorted(t, t - 1.0)
    spans = np.maximum(t - t[starts], 1e-9)
    rates = np.where(np.arange(len(t)) > starts, (np.arange(len(t)) - starts) / spans, 0.0)
    return [round(float(r), 1) for r in rates[-120:]]
