"""`ale:<Game>`: Atari games through gymnasium + ale-py, headless. The source also takes actions.

Each `read()` advances the game by one agent step with the last action given to `act()` (NOOP at
first). With `sync=True` the game instead waits for an action after each frame, so a closed loop
is deterministic for a seed. Episodes restart by themselves; the first frame of each is marked
`first` so that the model resets its state there.

Real-time faults, seeded like everything else (for measuring them, and for training agents that tolerate them):
- `delay=K` or `delay=LO-HI`: the action chosen on a frame reaches the game K steps late (each action drawn
  from LO..HI); the game plays the newest action that has arrived.
- `repeat=P`: with probability P a read shows the previous frame again (the agent decides twice on one step).
- `drop=P`: with probability P the game takes two steps before the next frame (one frame is never seen).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..errors import SourceError
from .base import Frame, Source

ATARI_FPS = 60.0


class AleGame(Source):
    def __init__(self, game: str, seed: int = 0, frameskip: int = 4, sticky: float = 0.25,
                 max_episode_steps: int = 16000, sync: bool = False, flicker: float = 0.0, delay: int | str = 0,
                 repeat: float = 0.0, drop: float = 0.0) -> None:
        super().__init__()
        try:
            import ale_py
            import gymnasium
        except ImportError as e:
            raise SourceError(f"ale: sources need gymnasium and ale-py ({e.name} is not installed)") from None
        gymnasium.register_envs(ale_py)
        env_id = game if "/" in game else f"ALE/{game}-v5"
        self._make_env = lambda: gymnasium.make(env_id, render_mode="rgb_array", frameskip=frameskip,
                                                repeat_action_probability=sticky, max_episode_steps=max_episode_steps)
        try:
            self.env = self._make_env()
        except Exception as e:  # gymnasium raises several error types for unknown ids
            raise SourceError(f"unknown game '{game}' ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self.name = f"ale:{game}"
        self.frameskip = frameskip
        self.fps = ATARI_FPS / frameskip
        self.seed, self.sync, self.flicker = seed, sync, flicker
        self.reactive = sync
        self._flicker_rng = np.random.default_rng((seed, 0xF11C))  # blanking is seeded too: runs repeat exactly
        self.delay, self.repeat, self.drop = parse_delay(delay), float(repeat), float(drop)
        if not (0 <= self.repeat < 1 and 0 <= self.drop < 1):
            raise SourceError(f"ale: repeat and drop are probabilities below 1, got repeat={repeat} drop={drop}")
        self._timing_rng = np.random.default_rng((seed, 0x7131))
        self._in_flight: list[tuple[int, int, int]] = []  # (step it lands at, issue number, action), delayed actions
        self._issued = 0
        self.next_delay = self.delay[0]  # steps late the action chosen on the current frame will arrive
        self._step = 0  # game steps taken, over all episodes
        self._image: np.ndarray | None = None
        self._shadow = None  # the emulator that peek() plays ahead on, made on first use
        self.n_actions = int(self.env.action_space.n)
        self.action_meanings = self.env.unwrapped.get_action_meanings()
        self.episode_returns: list[float] = []  # one per finished episode
        self.episode_return = 0.0
        self.episode_steps = 0
        self.reward = 0.0  # the game's reward over the step(s) the last read took
        self._episode = 0
        self._obs: np.ndarray | None = None
        self._action = 0
        self._cond = threading.Condition()
        self._acted = False
        self._closed = False

    def act(self, action: int) -> None:
        """The action for the next step(s); thread-safe."""
        if not 0 <= action < self.n_actions:
            raise ValueError(f"action {action} out of range 0..{self.n_actions - 1}")
        with self._cond:
            if self.delay[1]:
                self._issued += 1
                self._in_flight.append((self._step + 1 + self.next_delay, self._issued, int(action)))
            else:
                self._action = int(action)
            self._acted = True
            self._cond.notify_all()

    def peek(self, steps: int) -> list[np.ndarray]:
        """The RAM now and after each of the next `steps` steps, played with the actions already on their way.

        It plays them on a second emulator set to this one's state (random state included), so the game itself
        is untouched. Exact without sticky actions; with them, the first step ahead may repeat a different action.
        """
        with self._cond:  # the state and the RAM of one moment
            self._shadow_ale().restoreState(self.env.unwrapped.ale.cloneState(include_rng=True))
            rams = [self.env.unwrapped.ale.getRAM().copy()]
        for action in self.actions_ahead(steps):
            if self._shadow.step(action)[2]:
                break  # the episode ends first
            rams.append(self._shadow.ale.getRAM().copy())
        return rams

    def simulate(self, policy: Callable[[np.ndarray, int], int], steps: int) -> tuple[float, int]:
        """Play up to `steps` steps ahead on the second emulator, from this game's exact state now (random state included,
        so sticky actions repeat as they will here), `policy(ram, t)` choosing step t's action; stop at the first reward.
        The reward and the step it came on (`steps` if none). The game itself is untouched."""
        ale = self._shadow_ale()
        ale.restoreState(self._state_now())
        actions = self._shadow._action_set
        for t in range(steps):
            action = actions[policy(ale.getRAM(), t)]
            reward = sum(ale.act(action) for _ in range(self.frameskip))
            if reward or ale.game_over():
                return float(reward), t
        return 0.0, steps

    def _shadow_ale(self):
        if self._shadow is None:
            self._shadow = self._make_env().unwrapped
            self._shadow.reset(seed=self.seed)
        return self._shadow.ale

    def actions_ahead(self, steps: int) -> list[int]:
        """The actions the game will play on each of its next `steps` steps, from the actions already on their way."""
        ahead, action, flight = [], self._action, self._in_flight
        for n in range(self._step + 1, self._step + 1 + steps):
            action, flight = arrived(flight, n, action)
            ahead.append(action)
        return ahead

    def in_flight_action(self, steps: int) -> int:
        """The action the game will play `steps` steps from now (0: the one it played last)."""
        return self.actions_ahead(steps)[-1] if steps else self._action

    def ram(self) -> np.ndarray:
        """The game's RAM now, a copy read under the game's lock: a step on the capture thread never tears it."""
        with self._cond:
            return self.env.unwrapped.ale.getRAM().copy()

    def _state_now(self):
        with self._cond:
            return self.env.unwrapped.ale.cloneState(include_rng=True)

    def _reset(self) -> np.ndarray:
        with self._cond:  # the emulator changes only under the game's lock (the expert reads it from another thread)
            obs, _ = self.env.reset(seed=self.seed + self._episode)
        self._episode += 1
        self.episode_return, self.episode_steps = 0.0, 0
        return obs

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        first = self._obs is None
        self.reward = 0.0
        if first:
            obs = self._reset()
        else:
            with self._cond:
                while self.sync and not self._acted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                self._acted = False
            if self.repeat and self._timing_rng.random() < self.repeat:
                return self._frame(self._image.copy())  # the same step seen again
            steps = 2 if self.drop and self._timing_rng.random() < self.drop else 1
            for _ in range(steps):
                obs, first = self._advance()
                if first:
                    break
        with self._cond:
            self._acted = False  # in sync mode, the next step waits for a decision on this frame
        self._obs = obs
        if self.flicker and self._flicker_rng.random() < self.flicker:
            image = np.zeros_like(obs)  # Flickering Pong: the frame is blanked, the game goes on
        else:
            image = np.ascontiguousarray(obs[:, :, ::-1])  # RGB -> BGR
        self._image = image
        lo, hi = self.delay
        self.next_delay = lo if lo == hi else int(self._timing_rng.integers(lo, hi + 1))  # for the action on this frame
        return self._frame(image, first=first, reward=self.reward)

    def _advance(self) -> tuple[np.ndarray, bool]:
        """One game step with the action in effect; at an episode's end, the next episode's first frame."""
        with self._cond:
            self._step += 1
            self._action, self._in_flight = arrived(self._in_flight, self._step, self._action)
            obs, reward, terminated, truncated, _ = self.env.step(self._action)
        self.reward += float(reward)
        self.episode_return += float(reward)
        self.episode_steps += 1
        if terminated or truncated:
            self.episode_returns.append(self.episode_return)
            return self._reset(), True
        return obs, False

    def summary(self) -> dict:
        return {"episode_returns": list(self.episode_returns)}

    def status(self) -> dict:
        return {"score": self.episode_return, "episode": self._episode, "episode_returns": list(self.episode_returns)}

    def interrupt(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        self.interrupt()
        self.env.close()
        if self._shadow is not None:
            self._shadow.close()


def arrived(flight: list[tuple[int, int, int]], step: int, action: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The action in effect at `step` and what is still on its way, given (arrival step, issue number, action) entries."""
    landed = [a for a in flight if a[0] <= step]
    if not landed:
        return action, flight
    newest = max(landed, key=lambda a: a[1])
    return newest[2], [a for a in flight if a[0] > step and a[1] > newest[1]]


def parse_delay(delay: int | str) -> tuple[int, int]:
    """`2` → (2, 2); `"0-2"` → (0, 2)."""
    lo, sep, hi = str(delay).partition("-")
    try:
        bounds = (int(lo), int(hi) if sep else int(lo))
    except ValueError:
        raise SourceError(f"ale: delay is a number of steps or a range LO-HI, got '{delay}'") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise SourceError(f"ale: delay range must satisfy 0 <= LO <= HI, got '{delay}'")
    return bounds
