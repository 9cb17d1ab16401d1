"""Where a recorded frame's label comes from: the keyboard, a game's expert, or a synthetic source's truth."""

from __future__ import annotations

import threading

from ..config import ExpertConfig
from ..errors import UserError
from ..games.agents import ExpertAgent
from ..keymaps import PRESETS, label_from_keys
from ..runtime.ring import RingFrame
from ..sources.ale import AleGame
from ..sources.base import Source


class Labeller:
    """Labels each recorded frame with one of `classes`. Subclasses implement `label`."""

    classes: list[str]
    paused: bool = False  # frames are not recorded while paused

    def label(self, frame: RingFrame) -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        """What made the labels, for the session's meta.yaml."""
        return {"labeller": type(self).__name__}

    def close(self) -> None:
        pass


def key_name(key) -> str:
    """pynput Key or KeyCode → a lower-case name: 'a', 'left', 'f8'."""
    char = getattr(key, "char", None)
    if char:
        return char.lower()
    return str(getattr(key, "name", key)).lower().removeprefix("key.")


class KeyboardLabeller(Labeller):
    """The keys held while a frame arrives, through pynput. `pause_key` toggles pause."""

    def __init__(self, preset: str = "lsr3", pause_key: str = "f9") -> None:
        try:
            from pynput import keyboard
        except Exception as e:  # pynput raises ImportError subclasses and Xlib errors without a display
            raise UserError(f"keyboard labelling needs pynput and a display it can read ({type(e).__name__}: {e})") from None
        self.preset, self.classes, self.pause_key = preset, list(PRESETS[preset]), pause_key.lower()
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


class OracleLabeller(Labeller):
    """Ground truth from a source that knows it (e.g. the synthetic ball's direction of motion)."""

    def __init__(self, source: Source) -> None:
        if not source.truth_classes:
            raise UserError(f"the oracle labeller needs a source that knows its frames' classes (synthetic:), not {source.name}")
        self.source, self.classes = source, list(source.truth_classes)

    def label(self, frame: RingFrame) -> str:
        return self.source.label_of(frame.seq)


class ExpertLabeller(Labeller):
    """A game's scripted expert labels every frame, whoever plays: itself, or a model (DAgger). It is an agent, so it
    labels by deciding inside the runtime's loop (`record` runs it there: as the player, or in a LabelledAgent beside the
    model that plays), never here."""

    def __init__(self, game: AleGame, params: ExpertConfig) -> None:
        self.expert = ExpertAgent(game, params)
        self.classes = self.expert.classes

    def describe(self) -> dict:
        return {"labeller": "ExpertLabeller", "expert": self.expert.describe()["expert"]}


def make_labeller(kind: str, source: Source, keys: str = "lsr3", pause_key: str = "f9",
                  expert: ExpertConfig | None = None) -> Labeller:
    """`auto`: the expert for a game, the truth for a source that knows it, else the keyboard."""
    if kind == "auto":
        kind = "expert" if isinstance(source, AleGame) else "oracle" if source.truth_classes else "keyboard"
    if kind == "expert":
        if not isinstance(source, AleGame):
            raise UserError(f"the expert labeller needs an ale: source, not {source.name}")
        return ExpertLabeller(source, expert or ExpertConfig())
    if kind == "oracle":
        return OracleLabeller(source)
    if keys not in PRESETS or not PRESETS[keys]:
        raise UserError(f"keyboard labelling needs a key preset with classes (keys.preset lsr3, wasd9 or gestures), "
                        f"not '{keys}'")
    return KeyboardLabeller(keys, pause_key)
