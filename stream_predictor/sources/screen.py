"""Screen capture through mss: the whole monitor or a region, `screen[:x,y,w,h]`."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

from ..errors import ReadError, SourceError
from .base import Frame, Source


def check_display() -> None:
    """Fail with one clear line where no screen can be captured."""
    if sys.platform.startswith("linux"):
        if os.environ.get("XDG_SESSION_TYPE") == "wayland" and not os.environ.get("DISPLAY"):
            raise SourceError("screen capture needs X11; this is a Wayland session without XWayland (DISPLAY unset)")
        if not os.environ.get("DISPLAY"):
            raise SourceError("screen capture needs a display: DISPLAY is not set (start Xvfb or an X session)")


class Screen(Source):
    """A live source. Each thread that reads gets its own mss instance, as mss requires."""

    live = True

    def __init__(self, region: tuple[int, int, int, int] | None = None, monitor: int = 1, fps: float = 0.0) -> None:
        super().__init__()
        check_display()
        import mss  # optional at import time: only screen capture needs it

        self._mss_module = mss
        self._local = threading.local()
        self._all: list = []
        sct = self._sct()
        monitors = sct.monitors
        if not 1 <= monitor < len(monitors):
            raise SourceError(f"monitor {monitor} does not exist; this display has {len(monitors) - 1}")
        mon = monitors[monitor]
        if region is None:
            self.box = {"left": mon["left"], "top": mon["top"], "width": mon["width"], "height": mon["height"]}
        else:
            x, y, w, h = region
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > mon["width"] or y + h > mon["height"]:
                raise SourceError(f"screen region {x},{y},{w},{h} is outside monitor {monitor} ({mon['width']}x{mon['height']})")
            self.box = {"left": mon["left"] + x, "top": mon["top"] + y, "width": w, "height": h}
        self.fps = self.fps_cap = fps  # 0 captures as fast as it can
        self.name = "screen:{left},{top},{width},{height}".format(**self.box)

    def _sct(self):
        sct = getattr(self._local, "sct", None)
        if sct is None:
            try:
                factory = getattr(self._mss_module, "MSS", None) or self._mss_module.mss  # MSS since mss 10
                sct = self._local.sct = factory()
            except Exception as e:  # mss raises its own ScreenShotError and Xlib errors
                raise SourceError(f"cannot open the display {os.environ.get('DISPLAY')}: {e}") from None
            self._all.append(sct)
        return sct

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        try:
            shot = self._sct().grab(self.box)
        except Exception as e:
            raise ReadError(f"screen grab failed: {e}") from e
        image = np.asarray(shot)[:, :, :3]  # BGRA -> BGR view
        return self._frame(np.ascontiguousarray(image))

    def reopen(self) -> None:
        self._local.sct = None

    def close(self) -> None:
        for sct in self._all:
            sct.close()
        self._all.clear()
