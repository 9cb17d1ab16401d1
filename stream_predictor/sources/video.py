"""OpenCV sources: video files, network streams and cameras."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import ReadError, SourceError
from .base import Frame, Source


def cv_read(cap: cv2.VideoCapture, out: np.ndarray | None) -> tuple[bool, np.ndarray | None]:
    """cap.read(), decoding straight into `out` when the frame has its shape (cv2 reuses a matching array)."""
    return cap.read(out) if out is not None else cap.read()


class VideoFile(Source):
    """Any container/codec OpenCV reads. Finite: replayed in lockstep or paced in realtime."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        self.name = str(path)
        if not path.is_file():
            raise SourceError(f"no such video file: {path}")
        if path.stat().st_size == 0:
            raise SourceError(f"video file is empty (0 bytes): {path}")
        # FFmpeg when it is there: OpenCV's own AVI reader prints parse errors straight to stderr.
        api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(str(path), api)
        if not self._cap.isOpened():
            raise SourceError(f"cannot decode video file (unknown or corrupt format): {path}")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if n > 0 else None

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        ok, image = cv_read(self._cap, out)
        if not ok:
            if self._seq == 0:
                raise SourceError(f"video file has no frames OpenCV can decode: {self.name}")
            # Containers may estimate their frame count, so a shortfall of a frame or two is not an error.
            if self.frame_count and self._seq < 0.98 * self.frame_count - 1:
                raise SourceError(f"video file is truncated or corrupt: decoding stopped after {self._seq} of "
                                  f"{self.frame_count} frames: {self.name}")
            return None
        return self._frame(image)

    def close(self) -> None:
        self._cap.release()


class _LiveCapture(Source):
    """A cv2.VideoCapture that may fail mid-stream and be reopened."""

    live = True

    def __init__(self, read_timeout_s: float) -> None:
        super().__init__()
        self._timeout_ms = int(read_timeout_s * 1000)
        self._cap = self._open()
        self._reopened = False

    def _open(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        ok, image = cv_read(self._cap, out)
        if not ok or image is None:
            raise ReadError(f"{self.name}: read failed")
        first, self._reopened = self._reopened, False
        return self._frame(image, first)  # the first frame after a reconnect restarts the recurrent state

    def reopen(self) -> None:
        self._cap.release()
        self._cap = self._open()
        self._reopened = True

    def close(self) -> None:
        self._cap.release()


class Stream(_LiveCapture):
    """rtsp:// http:// and other URLs FFmpeg reads. Reads time out instead of hanging."""

    def __init__(self, url: str, read_timeout_s: float = 5.0) -> None:
        self.name = url
        super().__init__(read_timeout_s)

    def _open(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
        cap = cv2.VideoCapture(self.name, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(f"cannot open stream: {self.name}")
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return cap


class Camera(_LiveCapture):
    """A camera by index, with a one-frame driver buffer so that reads return the newest frame."""

    def __init__(self, index: int, width: int = 0, height: int = 0, fps: float = 0.0, read_timeout_s: float = 5.0,
                 fourcc: str = "") -> None:
        if fourcc and len(fourcc) != 4:
            raise SourceError(f"camera fourcc must be 4 characters (e.g. MJPG), got '{fourcc}'")
        self.index, self.name = index, f"camera {index}"
        self._want = (width, height, fps)
        self.fourcc = fourcc  # e.g. MJPG: most USB cameras reach their full frame rate only compressed
        super().__init__(read_timeout_s)

    def _open(self) -> cv2.VideoCapture:
        if os.name == "posix" and not Path(f"/dev/video{self.index}").exists():
            raise SourceError(f"no camera at index {self.index} (/dev/video{self.index} does not exist)")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
        cap = cv2.VideoCapture(self.index, cv2.CAP_ANY, params)
        if not cap.isOpened():
            raise SourceError(f"no camera at index {self.index} (cannot open it)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of stale ones
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        width, height, fps = self._want
        if width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        code = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        self.actual = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                       "fps": self.fps, "fourcc": "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ")}
        print(camera_report(self.name, self._want, self.actual), file=sys.stderr, flush=True)
        return cap

    def summary(self) -> dict:
        return {"camera": getattr(self, "actual", {})}


def camera_report(name: str, want: tuple[int, int, float], got: dict) -> str:
    """One line saying what a camera gives (resolution, frame rate, pixel format) and what it does not of what was asked:
    cameras silently pick the nearest mode they have."""
    line = f"{name}: {got['width']}x{got['height']} at {got['fps']:g} fps" + (f", {got['fourcc']}" if got["fourcc"] else "")
    width, height, fps = want
    missed = []
    if width and height and (width, height) != (got["width"], got["height"]):
        missed.append(f"{width}x{height}")
    if fps and abs(fps - got["fps"]) > 0.5:
        missed.append(f"{fps:g} fps")
    return line + (f" (asked for {' at '.join(missed)}: the camera has no such mode)" if missed else "")
