"""Key presets, in one table: for each preset, its classes in order and the keys that mean each; and the keys of the
game window.

The keys sink presses a class's keys (`keys.preset`, then `keys.map` entries over it); recording from the keyboard
labels each frame with the class of the keys held (`record.labeller=keyboard` with the same preset). Labelling also
takes each preset's alternates (A/D for the arrows, arrows for WASD, ←/→/c/h for the gesture digits).
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, tuple[str, ...]]] = {  # preset → class → keys (pynput names or single characters)
    "lsr3": {"left": ("left",), "straight": (), "right": ("right",)},
    "wasd9": {"W": ("w",), "S": ("s",), "A": ("a",), "D": ("d",), "WA": ("w", "a"), "WD": ("w", "d"), "SA": ("s", "a"),
              "SD": ("s", "d"), "none": ()},
    "gestures": {"none": (), "swipe_left": ("1",), "swipe_right": ("2",), "circle": ("3",), "hold": ("4",)},
    "none": {},  # the keys sink presses only what keys.map says
}
# The game window (`host`): a held key → the ALE action meaning it plays, per game (Pong's paddle moves up on RIGHT
# and down on LEFT); the desktop agent presses these keys for its classes' actions.
GAME_KEYS: dict[str, dict[str, str]] = {"Pong": {"up": "RIGHT", "down": "LEFT"}}
DEFAULT_GAME_KEYS = {"up": "UP", "down": "DOWN", "left": "LEFT", "right": "RIGHT", "space": "FIRE"}
ALTERNATES: dict[str, dict[str, str]] = {  # preset → a key held while labelling → the key it stands for
    "lsr3": {"a": "left", "d": "right"},
    "wasd9": {"up": "w", "down": "s", "left": "a", "right": "d"},
    "gestures": {"left": "1", "right": "2", "c": "3", "h": "4"},
}


def preset_classes(preset: str) -> list[str]:
    """The classes a preset labels, in order."""
    return list(PRESETS[preset])


def label_from_keys(pressed: set[str], preset: str) -> str:
    """The class that a set of held key names means in `preset`. Opposite keys cancel out; two classes at once (two
    gestures, left and right) are the preset's class without keys."""
    alt = ALTERNATES.get(preset, {})
    held = {alt.get(k, k) for k in pressed}
    if preset == "wasd9":  # a vertical and a horizontal part, each cancelled by its opposite
        vertical = "W" if "w" in held and "s" not in held else "S" if "s" in held and "w" not in held else ""
        horizontal = "A" if "a" in held and "d" not in held else "D" if "d" in held and "a" not in held else ""
        return vertical + horizontal or "none"
    table = PRESETS[preset]
    rest = next(c for c, keys in table.items() if not keys)
    meant = [c for c, keys in table.items() if keys and set(keys) <= held]
    return meant[0] if len(meant) == 1 else rest
