"""Where a recorded frame's label comes from: the keyboard, a game's expert, or a synthetic source's truth.

A labeller has `classes` (ordered names), `label(frame) -> name`, `paused` and `close()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .errors import UserError
from .ring import RingFrame
from .sources.base import Source

# Key presets: class names in order, and how pressed keys map to them.
PRESETS = {
    "lsr3": ["left", "straight", "right"],
    "wasd9": ["W", "S", "A", "D", "WA", "WD", "SA", "SD", "none"],
}


def label_from_keys(pressed: set[str], preset: str) -> str:
    """The class that a set of pressed key names means. Opposite keys cancel out."""
    if preset == "lsr3":
        left = bool(pressed & {"left", "a"})
        right = bool(pressed & {"right", "d"})
        return "left" if left and not right else "right" if right and not left else "straight"
    up, down = "w" in pressed or "up" in pressed, "s" in pressed or "down" in pressed
    left, right = "a" in pressed or "left" in pressed, "d" in pressed or "right" in pressed
    vertical = "W" if up and not down else "S" if down and not up else ""
    horizontal = "A" if left and not right else "D" if right and not left else ""
    return vertical + horizontal or "none"


def key_name(key) -> str:
    """pynput Key or KeyCode → a lower-case name: 'a', 'left', 'f8'."""
    char = getattr(key, "char", None)
    if char:
        return char.lower()
    return str(getattr(key, "name", key)).lower().removeprefix("key.")


class KeyboardLabeller:
    """The keys held while a frame arrives, through pynput. `pause_key` toggles pause."""

    def __init__(self, preset: str = "lsr3", pause_key: str = "f8") -> None:
        try:
            from pynput import keyboard
        except Exception as e:  # pynput raises ImportError subclasses and Xlib errors without a display
            raise UserError(f"keyboard labelling needs pynput and a display it can read ({type(e).__name__}: {e})") from None
        self.preset, self.classes, self.pause_key = preset, PRESETS[preset], pause_key.lower()
        self.paused = False
        self._pressed: set[str] = set()
        self._lock = threading.Lock()
        self._listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        self._listener.start()
        self._listener.wait()

    def _on_press(self, key) -> None:
        name = key_name(key)
        with self._lock:
            if name == self.pause_key and name not in self._pressed:
                self.paused = not self.paused
            self._pressed.add(name)

    def _on_release(self, key) -> None:
        with self._lock:
            self._pressed.discard(key_name(key))

    def label(self, frame: RingFrame) -> str:
        with self._lock:
            return label_from_keys(set(self._pressed), self.preset)

    def close(self) -> None:
        self._listener.stop()
        self._listener.join(0.2)  # pynput's X listener may linger; it is a daemon thread


class OracleLabeller:
    """Ground truth from a synthetic source (e.g. the ball's direction of motion)."""

    paused = False

    def __init__(self, source: Source) -> None:
        from .sources.synthetic import DIRECTIONS

        self.source, self.classes = source, list(DIRECTIONS)

    def label(self, frame: RingFrame) -> str:
        return self.source.label_of(frame.seq)

    def close(self) -> None:
        pass


# Game experts: name → (class names, {class: action}, policy(ram, state) -> class). Filled in by games.py.
Expert = tuple[list[str], dict[str, int], Callable[[np.ndarray, dict], str]]
EXPERTS: dict[str, Expert] = {}


class ExpertLabeller:
    """A scripted expert that reads the game's RAM. It labels every frame; with `acts=True` it also plays.

    With a policy model playing instead (DAgger), the expert still labels what the model sees.
    """

    paused = False

    def __init__(self, source: Source, acts: bool = True) -> None:
        from . import games  # noqa: F401 - registers the experts

        game = source.name.removeprefix("ale:")
        if game not in EXPERTS:
            raise UserError(f"no expert for {source.name}; experts exist for: {', '.join(f'ale:{g}' for g in EXPERTS) or 'none'}")
        self.source, self.acts = source, acts
        self.classes, self.actions, self._policy = EXPERTS[game]
        self._memory: dict = {}

    def label(self, frame: RingFrame) -> str:
        if frame.first:
            self._memory.clear()
        name = self._policy(self.source.ram(), self._memory)
        if self.acts:
            self.source.act(self.actions[name])
        return name

    def executed(self, name: str) -> None:
        """Another player acted (DAgger): the expert's memory of the last action must be what really happened."""
        self._memory["last"] = name

    def close(self) -> None:
        pass


def make_labeller(kind: str, source: Source, keys: str = "lsr3", pause_key: str = "f8", expert_acts: bool = True):
    if kind == "auto":
        kind = "expert" if source.name.startswith("ale:") else "oracle" if hasattr(source, "label_of") else "keyboard"
    if kind == "expert":
        if not source.name.startswith("ale:"):
            raise UserError(f"the expert labeller needs an ale: source, not {source.name}")
        return ExpertLabeller(source, acts=expert_acts)
    if kind == "oracle":
        if not hasattr(source, "label_of"):
            raise UserError(f"the oracle labeller needs a synthetic: source, not {source.name}")
        return OracleLabeller(source)
    return KeyboardLabeller(keys, pause_key)
