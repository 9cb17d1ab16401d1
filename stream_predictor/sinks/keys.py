"""KeySink: each tick's class becomes a key combination held down until the class changes.

- Keys are pressed and released by difference: going from `up+left` to `up` releases only `left`.
- Everything held is released on `close()`, which the Predictor calls on every exit path (end of
  stream, exception, Ctrl-C); `run.py` turns SIGTERM into the same path, and an `atexit` hook is
  the last resort. No stuck keys.
- A pause key (F9 by default) toggles: paused releases everything and presses nothing until resumed.
- `dry_run` prints what it would press instead of pressing (no display needed).
- Backends: pynput (X11 through XTest, Windows, macOS), xdotool (X11), or xtest (X11 through python-xlib, on a display
  named here rather than $DISPLAY: pynput reads only $DISPLAY, so keys for another display, such as the private Xvfb
  of `play --via desktop`, go through XTest directly; the summary's `keys_backend` says which ran).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

from ..config import KeysConfig
from ..errors import ConfigError, UserError
from ..keymaps import PRESETS
from ..runtime.tick import Sink, Tick, Timings

# key names → X keysym names (xdotool and XTest; a single character is its own keysym)
KEYSYMS = {"up": "Up", "down": "Down", "left": "Left", "right": "Right", "space": "space", "enter": "Return",
           "esc": "Escape", "shift": "Shift_L", "ctrl": "Control_L", "alt": "Alt_L", "tab": "Tab"}


def key_map(classes: list[str], cfg: KeysConfig) -> dict[str, tuple[str, ...]]:
    """Class name → the keys to hold, from the preset and then `keys.map` entries `class:key+key`."""
    mapping = dict(PRESETS[cfg.preset])
    for entry in cfg.map:
        cls, sep, keys = entry.partition(":")
        if not sep:
            raise ConfigError(f"config key 'keys.map': entry '{entry}' is not class:key+key (e.g. up:up, WA:w+a, stay:)")
        mapping[cls.strip()] = tuple(k.strip().lower() for k in keys.split("+") if k.strip())
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise ConfigError(f"no keys for the model's class(es) {missing}: set keys.preset or add keys.map entries like "
                          f"'{missing[0]}:space' (an empty list, '{missing[0]}:', holds nothing)")
    return {c: mapping[c] for c in classes}


class _Backend:
    """Presses and releases keys by name; may check names up front and listen for the pause key."""

    name = "none"

    def check(self, name: str) -> None:
        """Raise a UserError for a key name this backend cannot press."""

    def press(self, name: str) -> None:
        raise NotImplementedError

    def release(self, name: str) -> None:
        raise NotImplementedError

    def listen(self, key: str, on_toggle) -> Any:
        """Call `on_toggle` whenever `key` is pressed; returns something with `stop()`, or None if it cannot listen."""
        return None

    def close(self) -> None:
        """Let go of the display (while it still exists)."""


class _Pynput(_Backend):
    name = "pynput"

    def __init__(self) -> None:
        try:
            from pynput import keyboard
        except Exception as e:  # pynput raises ImportError subclasses and Xlib errors without a display
            raise UserError(f"pressing keys needs pynput and a display ({type(e).__name__}: {str(e).splitlines()[0]}); "
                            "try keys.backend=xdotool or keys.dry_run=true") from None
        self.keyboard = keyboard
        self.controller = keyboard.Controller()

    def _key(self, name: str):
        if len(name) > 1:
            return getattr(self.keyboard.Key, name)
        if sys.platform.startswith("linux"):
            # By keysym, so that pynput sends it through XTest like a real key (for characters it would otherwise use
            # XSendEvent, which only the focused window sees and many games ignore).
            from Xlib import XK

            return self.keyboard.KeyCode.from_vk(XK.string_to_keysym(name))
        return name

    def check(self, name: str) -> None:
        try:
            self._key(name)
        except AttributeError:
            raise UserError(f"unknown key '{name}' (names: a single character, or one of pynput's Key names such as up, "
                            "space, enter, f1)") from None

    def press(self, name: str) -> None:
        self.controller.press(self._key(name))

    def close(self) -> None:
        self.controller = None  # its display connection closes now, not at exit when the X server may be gone

    def release(self, name: str) -> None:
        self.controller.release(self._key(name))

    def listen(self, key: str, on_toggle) -> Any:
        def on_press(k) -> None:
            if str(getattr(k, "name", getattr(k, "char", ""))).lower() == key:
                on_toggle()

        listener = self.keyboard.Listener(on_press=on_press)
        listener.daemon = True
        listener.start()
        return listener


class _Xdotool(_Backend):
    def __init__(self, display: str | None = None) -> None:
        if not shutil.which("xdotool"):
            raise UserError("keys.backend=xdotool needs the xdotool program (apt-get install xdotool)")
        self.env = {**os.environ, "DISPLAY": display} if display else None
        self.name = f"xdotool on {display}" if display else "xdotool"

    def _run(self, action: str, name: str) -> None:
        subprocess.run(["xdotool", action, KEYSYMS.get(name, name)], check=True, timeout=5, env=self.env)

    def press(self, name: str) -> None:
        self._run("keydown", name)

    def release(self, name: str) -> None:
        self._run("keyup", name)


class _XTest(_Backend):
    """Key events through the X server's XTest extension (python-xlib), on the display named."""

    def __init__(self, display: str) -> None:
        try:
            from Xlib import XK, X
            from Xlib import display as xdisplay
            from Xlib.ext import xtest
        except ImportError:
            raise UserError(f"pressing keys on display {display} needs python-xlib (pip install python-xlib)") from None
        try:
            self.display = xdisplay.Display(display)
        except Exception as e:  # Xlib raises its own DisplayError family
            raise UserError(f"cannot open the display {display} to press keys: {e}") from None
        self.X, self.XK, self.xtest = X, XK, xtest
        self.name = f"xtest on {display}"

    def _code(self, name: str) -> int:
        code = self.display.keysym_to_keycode(self.XK.string_to_keysym(KEYSYMS.get(name, name)))
        if not code:
            raise UserError(f"unknown key '{name}' (names: a single character, or up, down, left, right, space, enter, "
                            "esc, shift, ctrl, alt, tab)")
        return code

    def check(self, name: str) -> None:
        self._code(name)

    def press(self, name: str) -> None:
        self.xtest.fake_input(self.display, self.X.KeyPress, self._code(name))
        self.display.sync()

    def release(self, name: str) -> None:
        self.xtest.fake_input(self.display, self.X.KeyRelease, self._code(name))
        self.display.sync()

    def close(self) -> None:
        self.display.close()



class _DryRun(_Backend):
    name = "dry run"

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout

    def press(self, name: str) -> None:
        print(f"press {name}", file=self.out, flush=True)

    def release(self, name: str) -> None:
        print(f"release {name}", file=self.out, flush=True)



def make_backend(cfg: KeysConfig, display: str | None = None):
    """The backend `cfg` asks for; keys for a `display` other than $DISPLAY go through XTest there (pynput's X11
    keys reach $DISPLAY only), or xdotool told that display."""
    if cfg.dry_run:
        return _DryRun()
    elsewhere = display and display != os.environ.get("DISPLAY") and sys.platform.startswith("linux")
    if cfg.backend == "xdotool":
        return _Xdotool(display if elsewhere else None)
    if cfg.backend == "xtest" or elsewhere:
        return _XTest(display or os.environ.get("DISPLAY", ""))
    if cfg.backend == "pynput":
        return _Pynput()
    try:
        return _Pynput()
    except UserError:
        if shutil.which("xdotool"):
            return _Xdotool()
        raise


class KeySink(Sink):
    """Holds the keys of each tick's class; `stats` has presses, releases and capture → key-press latency."""

    acts = True

    def __init__(self, classes: list[str], cfg: KeysConfig | None = None, backend=None, display: str | None = None) -> None:
        cfg = cfg or KeysConfig()
        self.keys = key_map(classes, cfg)
        self.backend = backend or make_backend(cfg, display)
        for name in sorted({k for keys in self.keys.values() for k in keys}):
            self.backend.check(name)
        self.held: set[str] = set()
        self.paused = False
        self.presses = self.releases = 0
        self.latency_ms = Timings()  # frame captured → its keys pressed
        self._lock = threading.Lock()
        self._closed = False
        self._listener = self.backend.listen(cfg.pause_key.lower(), self.toggle_pause) if cfg.pause_key else None
        atexit.register(self.release_all)

    def _hold(self, want: set[str]) -> None:
        for name in sorted(self.held - want):
            self.backend.release(name)
            self.releases += 1
        for name in sorted(want - self.held):
            self.backend.press(name)
            self.presses += 1
        self.held = want

    def __call__(self, tick: Tick) -> None:
        with self._lock:
            if self._closed or self.paused:
                return
            want = set(self.keys[tick.class_name])
            if want != self.held:
                self._hold(want)
                if not tick.stale:
                    self.latency_ms.add((time.monotonic() - tick.t_capture) * 1000.0)

    def toggle_pause(self) -> None:
        with self._lock:
            self.paused = not self.paused
            if self.paused:
                self._hold(set())
        print(f"keys {'paused' if self.paused else 'resumed'}", file=sys.stderr, flush=True)

    def release_all(self) -> None:
        """Release every held key (idempotent; safe from atexit)."""
        with self._lock:
            try:
                self._hold(set())
            except Exception:  # the display may be gone at exit; nothing more can be done
                self.held = set()

    def close(self) -> None:
        self.release_all()
        self._closed = True
        if self._listener is not None:
            self._listener.stop()
        atexit.unregister(self.release_all)
        self.backend.close()

    def summary(self) -> dict:
        p50, p99 = self.latency_ms.percentiles(50, 99)
        return {"presses": self.presses, "releases": self.releases, "key_latency_ms_p50": p50, "key_latency_ms_p99": p99,
                "keys_backend": self.backend.name}
