"""A game in a desktop window, played from the keyboard: the target for screen → keys agents.

`python run.py host --game Pong` opens a Tk window titled "stream-predictor Pong" that shows the ALE
frames 1:1 and steps the game at its native rate with the action of the keys held in that window
(Up/Down for Pong; the arrow keys and Space for other games). Run an agent on it with
`python run.py predict --config pong --source "window:stream-predictor Pong?fps=15" --weights … --sink keys`.

With `--log FILE`, one JSON line per game step records the keys held, the action and the player's
paddle position where the game has a known RAM address: the evidence that keys reached the game.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..sources.ale import AleGame

# Keys → action meaning, per game (the ALE names; Pong's paddle moves up on RIGHT and down on LEFT).
GAME_KEYS = {"Pong": {"up": "RIGHT", "down": "LEFT"}}
DEFAULT_KEYS = {"up": "UP", "down": "DOWN", "left": "LEFT", "right": "RIGHT", "space": "FIRE"}
PADDLE_RAM = {"Pong": 51}  # the player's paddle y (grows downwards)
RELEASE_DEBOUNCE_MS = 40  # X autorepeat sends release+press pairs while a key is held: a release counts only if it lasts


def action_for(held: set[str], meanings: list[str], keys: dict[str, str]) -> int:
    """The action whose meaning combines the held keys' meanings, e.g. {up, space} → UPFIRE; NOOP if none fits."""
    parts = [keys[k] for k in sorted(held) if k in keys]
    order = ["UP", "RIGHT", "LEFT", "DOWN", "FIRE"]
    parts = sorted(set(parts), key=lambda p: order.index(p) if p in order else len(order))
    wanted = "".join(parts) or "NOOP"
    return meanings.index(wanted) if wanted in meanings else (meanings.index(parts[0]) if parts and parts[0] in meanings else 0)


def host(game: str = "Pong", seed: int = 0, fps: float = 0.0, title: str = "", log: str | None = None, steps: int = 0,
         scale: int = 1) -> dict:
    try:
        import tkinter as tk
    except ImportError:
        raise UserError("the game window needs tkinter (apt-get install python3-tk)") from None
    source = AleGame(game, seed=seed)
    keys = GAME_KEYS.get(game, DEFAULT_KEYS)
    title = title or f"stream-predictor {game}"
    try:
        root = tk.Tk()
    except tk.TclError as e:
        raise UserError(f"cannot open a window: {e}") from None
    root.title(title)
    root.resizable(False, False)
    label = tk.Label(root, borderwidth=0, highlightthickness=0, padx=0, pady=0)
    label.pack()
    held: set[str] = set()
    pending: dict[str, str] = {}  # key → after() id of a release waiting out the debounce
    log_file = open(log, "w") if log else None  # noqa: SIM115 - closed below
    period = 1.0 / (fps or source.fps)
    state: dict = {"step": 0, "next": time.monotonic(), "image": None, "stop": False}

    def on_press(event) -> None:
        key = event.keysym.lower()
        if key in pending:
            root.after_cancel(pending.pop(key))
        held.add(key)

    def on_release(event) -> None:
        key = event.keysym.lower()

        def release() -> None:
            pending.pop(key, None)
            held.discard(key)

        pending[key] = root.after(RELEASE_DEBOUNCE_MS, release)

    def frame_loop() -> None:
        if state.get("stop"):
            root.destroy()
            return
        action = action_for(held, source.action_meanings, keys)
        source.act(action)
        frame = source.read()
        rgb = frame.image[:, :, ::-1]
        if scale > 1:
            rgb = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
        h, w = rgb.shape[:2]
        state["image"] = tk.PhotoImage(width=w, height=h, data=b"P6 %d %d 255\n" % (w, h) + rgb.tobytes(), format="PPM")
        label.configure(image=state["image"])
        if log_file:
            entry = {"step": state["step"], "t": round(time.monotonic(), 4), "keys": sorted(held), "action": action,
                     "action_name": source.action_meanings[action], "score": source.episode_return}
            if game in PADDLE_RAM:
                entry["paddle"] = int(source.ram()[PADDLE_RAM[game]])
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()
        state["step"] += 1
        if steps and state["step"] >= steps:
            root.destroy()
            return
        state["next"] = max(state["next"] + period, time.monotonic() - period)  # drift-free, never a burst to catch up
        root.after(max(1, int((state["next"] - time.monotonic()) * 1000)), frame_loop)

    def stop(signum: int, frame: object) -> None:  # Tk swallows exceptions in callbacks: end the loop by a flag
        state["stop"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    root.bind("<KeyPress>", on_press)
    root.bind("<KeyRelease>", on_release)
    root.after(0, frame_loop)
    root.focus_force()
    print(f"window '{title}': {game}, keys {', '.join(f'{k}→{v}' for k, v in keys.items())}; close it to stop", file=sys.stderr)
    try:
        root.mainloop()
    finally:
        if log_file:
            log_file.close()
        source.close()
    return {"game": game, "steps": state["step"], "episodes": len(source.episode_returns), "score": source.episode_return,
            "log": str(Path(log)) if log else None}
