"""Screen capture through mss: a monitor, a region of it (`screen[:x,y,w,h][?monitor=N]`), or a window by title (`window:TITLE`).

Monitors are numbered from 1; `monitor=0` is all of them as one virtual screen. `fps=N` caps the rate
(the capture thread paces reads on a drift-free schedule and sleeps between them). Windows are found by
title on X11 through xdotool; elsewhere, give the window's region.

`sync=1` (the default for `window:` with an fps) locks the grabs to the game's own frames: N is the game's
rate, and each frame is grabbed as soon as it appears (polled from a quarter period before it is due)
instead of at a fixed, arbitrary phase of the game's step. A grab late in the step leaves the decision
too little time to reach the game before its next step (docs/desktop.md has the measurements). Where the
picture does not change, a frame is still taken once per period.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from ..errors import ReadError, SourceError
from .base import Frame, Source


def check_display(display: str = "") -> None:
    """Fail with one clear line where no screen can be captured (`display`: an X display's name, else $DISPLAY)."""
    if sys.platform.startswith("linux") and not display:
        if os.environ.get("XDG_SESSION_TYPE") == "wayland" and not os.environ.get("DISPLAY"):
            raise SourceError("screen capture needs X11; this is a Wayland session without XWayland (DISPLAY unset)")
        if not os.environ.get("DISPLAY"):
            raise SourceError("screen capture needs a display: DISPLAY is not set (start Xvfb or an X session)")


class Screen(Source):
    """A live source. Each thread that reads gets its own mss instance, as mss requires. `display` names the X display
    to capture (default: $DISPLAY)."""

    live = True

    def __init__(self, region: tuple[int, int, int, int] | None = None, monitor: int = 1, fps: float = 0.0,
                 window: str = "", sync: bool = False, display: str = "") -> None:
        super().__init__()
        if sync and not fps > 0:
            raise SourceError("screen capture with sync=1 needs the game's rate as fps=N")
        check_display(display)
        self.display = display or os.environ.get("DISPLAY", "")
        import mss  # optional at import time: only screen capture needs it

        self._mss_module = mss
        self._local = threading.local()
        self._all: list = []
        sct = self._sct()
        monitors = sct.monitors
        if not 0 <= monitor < len(monitors):
            raise SourceError(f"monitor {monitor} does not exist; this display has {len(monitors) - 1} (0: all of them)")
        self.window = window
        if window:
            monitor, region = 0, find_window(window, monitors[0], self.display)
        mon = monitors[monitor]
        if region is None:
            self.box = {"left": mon["left"], "top": mon["top"], "width": mon["width"], "height": mon["height"]}
        else:
            x, y, w, h = region
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > mon["width"] or y + h > mon["height"]:
                raise SourceError(f"screen region {x},{y},{w},{h} is outside monitor {monitor} ({mon['width']}x{mon['height']})")
            self.box = {"left": mon["left"] + x, "top": mon["top"] + y, "width": w, "height": h}
        self.fps = self.fps_cap = fps  # 0 captures as fast as it can
        self.sync = sync
        if sync:
            self.fps_cap = 0.0  # read() waits for each new frame itself
            self.period, self.poll_s = 1.0 / fps, min(0.004, 0.1 / fps)
            self._last: np.ndarray | None = None
            self._last_change: float | None = None
            self._stop = threading.Event()
        self.name = f"window:{window}" if window else "screen:{left},{top},{width},{height}".format(**self.box)

    def _sct(self):
        sct = getattr(self._local, "sct", None)
        if sct is None:
            try:
                factory = getattr(self._mss_module, "MSS", None) or self._mss_module.mss  # MSS since mss 10
                sct = self._local.sct = factory(**({"display": self.display} if sys.platform.startswith("linux") else {}))
            except Exception as e:  # mss raises its own ScreenShotError and Xlib errors
                raise SourceError(f"cannot open the display {self.display}: {e}") from None
            self._all.append(sct)
        return sct

    def _grab(self) -> np.ndarray:
        try:
            shot = self._sct().grab(self.box)
        except Exception as e:
            raise ReadError(f"screen grab failed: {e}") from e
        return np.ascontiguousarray(np.asarray(shot)[:, :, :3])  # BGRA -> BGR

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        return self._frame(self._grab_new() if self.sync else self._grab())

    def _grab_new(self) -> np.ndarray:
        """The next frame, grabbed as soon as it shows: poll from a quarter period before it is due until it changes."""
        last = self._last_change
        if last is not None:
            self._stop.wait(max(0.0, last + 0.75 * self.period - time.monotonic()))
        deadline = (last if last is not None else time.monotonic()) + 1.5 * self.period
        while True:
            image, now = self._grab(), time.monotonic()
            changed = self._last is None or not np.array_equal(image, self._last)
            if changed or now >= deadline or self._stop.is_set():
                break
            self._stop.wait(self.poll_s)
        # A frame that did not change keeps the schedule (one per period) until the picture moves again.
        self._last_change = now if changed or last is None else max(last + self.period, now - self.period)
        self._last = image
        return image

    def interrupt(self) -> None:
        if self.sync:
            self._stop.set()

    def reopen(self) -> None:
        self._local.sct = None
        if self.window:  # it may have moved; the size stays what the ring was made for
            x, y, _, _ = find_window(self.window, self._sct().monitors[0], self.display)
            self.box = {**self.box, "left": x, "top": y}

    def close(self) -> None:
        for sct in self._all:
            sct.close()
        self._all.clear()


def find_window(title: str, screen: dict, display: str = "") -> tuple[int, int, int, int]:
    """(x, y, w, h) on the virtual screen of the largest visible window whose title matches `title` (a regex), via
    xdotool, on `display` (default: $DISPLAY)."""
    if not sys.platform.startswith("linux"):
        raise SourceError("window:TITLE works on X11 (through xdotool); on this platform give its region as screen:x,y,w,h")
    if not shutil.which("xdotool"):
        raise SourceError("window:TITLE needs the xdotool program (apt-get install xdotool)")
    display = display or os.environ.get("DISPLAY", "")
    env = {**os.environ, "DISPLAY": display}
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], capture_output=True, text=True,
                           timeout=5, env=env)
    boxes = []
    for wid in found.stdout.split():
        geometry = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], capture_output=True, text=True,
                                  timeout=5, env=env)
        g = dict(re.findall(r"^(\w+)=(-?\d+)$", geometry.stdout, re.M))
        if {"X", "Y", "WIDTH", "HEIGHT"} <= set(g):
            boxes.append(tuple(int(g[k]) for k in ("X", "Y", "WIDTH", "HEIGHT")))
    if not boxes:
        raise SourceError(f"no visible window with a title matching '{title}' on display {display}")
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    # Clip to the screen: mss cannot grab outside it.
    x0, y0 = max(x, screen["left"]), max(y, screen["top"])
    x1, y1 = min(x + w, screen["left"] + screen["width"]), min(y + h, screen["top"] + screen["height"])
    if x1 <= x0 or y1 <= y0:
        raise SourceError(f"the window matching '{title}' is off screen ({x},{y} {w}x{h})")
    return x0 - screen["left"], y0 - screen["top"], x1 - x0, y1 - y0
