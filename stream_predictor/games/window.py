"""A game in a desktop window, played from the keyboard: the target for screen → keys agents.

`python run.py host --game Pong` opens a Tk window titled "stream-predictor Pong" that shows the ALE
frames 1:1 and steps the game at its native rate with the action of the keys held in that window
(Up/Down for Pong; the arrow keys and Space for other games). Run an agent on it with
`python run.py predict --config pong --source "window:stream-predictor Pong?fps=15" --weights … --sink keys`.

With `--log FILE`, one JSON line per game step records when it was taken, the keys held, the action, a
checksum of the frame it put on screen (so a capture of the window can be matched to its step) and the
player's paddle position where the game has a known RAM address: the evidence that keys reached the game.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..keymaps import DEFAULT_GAME_KEYS, GAME_KEYS
from ..sources.ale import AleGame

PADDLE_RAM = {"Pong": 51}  # the player's paddle y (grows downwards)


def action_for(held: set[str], meanings: list[str], keys: dict[str, str]) -> int:
    """The action whose meaning combines the held keys' meanings, e.g. {up, space} → UPFIRE; NOOP if none fits."""
    parts = [keys[k] for k in sorted(held) if k in keys]
    order = ["UP", "RIGHT", "LEFT", "DOWN", "FIRE"]
    parts = sorted(set(parts), key=lambda p: order.index(p) if p in order else len(order))
    wanted = "".join(parts) or "NOOP"
    return meanings.index(wanted) if wanted in meanings else (meanings.index(parts[0]) if parts and parts[0] in meanings else 0)


class GameWindow:
    """A Tk window showing an ALE game 1:1 (or zoomed), stepped at a fixed rate with the action of the keys held."""

    def __init__(self, game: str = "Pong", seed: int = 0, fps: float = 0.0, title: str = "", log: str | None = None,
                 steps: int = 0, scale: int = 1, episodes: int = 0, episode_steps: int = 16000) -> None:
        try:
            import tkinter as tk
        except ImportError:
            raise UserError("the game window needs tkinter (apt-get install python3-tk)") from None
        self.tk, self.game, self.steps, self.scale, self.episodes = tk, game, steps, scale, episodes
        self.title = title or f"stream-predictor {game}"
        self.keys = GAME_KEYS.get(game, DEFAULT_GAME_KEYS)
        self.source = AleGame(game, seed=seed, max_episode_steps=episode_steps)
        try:
            self.root = tk.Tk()
        except tk.TclError as e:
            self.source.close()
            raise UserError(f"cannot open a window: {e}") from None
        self.root.title(self.title)
        self.root.resizable(False, False)
        self.label = tk.Label(self.root, borderwidth=0, highlightthickness=0, padx=0, pady=0)
        self.label.pack()
        self.log_path = log
        self.log = open(log, "w") if log else None  # noqa: SIM115 - closed in run()
        self.period = 1.0 / (fps or self.source.fps)
        self.held: set[str] = set()
        self.step, self.next_t, self.stop, self.image = 0, time.monotonic(), False, None

    # --- keys. While a key is held, X autorepeat sends release+press pairs, delivered together: each step first
    # handles every key event that has arrived, so a pair is never split and a real release counts at the next
    # step (no debounce delay that could make it a step late).
    def _on_press(self, event) -> None:
        self.held.add(event.keysym.lower())

    def _on_release(self, event) -> None:
        self.held.discard(event.keysym.lower())

    def _take_key_events(self) -> None:
        from _tkinter import DONT_WAIT, FILE_EVENTS, WINDOW_EVENTS

        while self.root.tk.dooneevent(WINDOW_EVENTS | FILE_EVENTS | DONT_WAIT):
            pass

    # --- one game step per period
    def _show(self, bgr: np.ndarray) -> None:
        rgb = bgr[:, :, ::-1]
        if self.scale > 1:
            rgb = np.repeat(np.repeat(rgb, self.scale, 0), self.scale, 1)
        h, w = rgb.shape[:2]
        ppm = b"P6 %d %d 255\n" % (w, h) + rgb.tobytes()
        if self.image is None:
            self.image = self.tk.PhotoImage(width=w, height=h)
            self.label.configure(image=self.image)
        self.image.configure(data=ppm, format="PPM")  # one image given new pixels, not a new image (docs/realtime.md)
        self.root.update_idletasks()  # and draw it now, not when Tk is next idle (docs/realtime.md)

    def _write_log(self, t: float, t_drawn: float, action: int, bgr: np.ndarray) -> None:
        entry = {"step": self.step, "t": round(t, 5), "drawn_ms": round((t_drawn - t) * 1000, 2), "keys": sorted(self.held),
                 "action": action, "action_name": self.source.action_meanings[action], "episode": len(self.source.episode_returns),
                 "score": self.source.episode_return, "crc": zlib.crc32(bgr)}
        if self.game in PADDLE_RAM:
            entry["paddle"] = int(self.source.ram()[PADDLE_RAM[self.game]])
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()

    def _tick(self) -> None:
        if self.stop:
            self.root.destroy()
            return
        self._take_key_events()
        action = action_for(self.held, self.source.action_meanings, self.keys)
        t = time.monotonic()
        self.source.act(action)
        bgr = self.source.read().image
        self._show(bgr)
        t_drawn = time.monotonic()
        if self.log:
            self._write_log(t, t_drawn, action, bgr)
        self.step += 1
        if (self.steps and self.step >= self.steps) or (self.episodes and len(self.source.episode_returns) >= self.episodes):
            self.root.destroy()
            return
        self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)  # drift-free, never a burst to catch up
        self.root.after(max(1, int((self.next_t - time.monotonic()) * 1000)), self._tick)

    def _signal(self, signum: int, frame: object) -> None:  # Tk swallows exceptions in callbacks: end the loop by a flag
        self.stop = True

    def run(self) -> dict:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._signal)
        self.root.bind("<KeyPress>", self._on_press)
        self.root.bind("<KeyRelease>", self._on_release)
        self.root.after(0, self._tick)
        self.root.focus_force()
        print(f"window '{self.title}': {self.game}, keys {', '.join(f'{k}→{v}' for k, v in self.keys.items())}; "
              "close it to stop", file=sys.stderr)
        try:
            self.root.mainloop()
        finally:
            if self.log:
                self.log.close()
            self.source.close()
        return {"game": self.game, "steps": self.step, "episodes": len(self.source.episode_returns),
                "episode_returns": list(self.source.episode_returns), "score": self.source.episode_return,
                "log": str(Path(self.log_path)) if self.log_path else None}


def host(game: str = "Pong", seed: int = 0, fps: float = 0.0, title: str = "", log: str | None = None, steps: int = 0,
         scale: int = 1, episodes: int = 0, episode_steps: int = 16000) -> dict:
    """Open the window and play until it is closed, `steps` steps or `episodes` episodes have passed, or SIGINT/SIGTERM."""
    return GameWindow(game, seed, fps, title, log, steps, scale, episodes, episode_steps).run()
