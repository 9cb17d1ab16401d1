"""Rollouts for reinforcement learning, made by the decision loop itself: K games played through a `MultiPredictor`
(each game a reactive source with its capture thread and ring, its action sink pressing what was decided), decided
by a `SamplingAgent`.

The agent samples each game's class from the model's probabilities (one engine call per tick for all K games, the
CNN once per frame, the LSTM stepped) and keeps, per tick, what PPO needs: the inputs it decided on (features, or the
preprocessed pixels when the CNN is trained too), the resets, the classes played, their log-probabilities, the value
of each state, and the state before the first tick kept. The reward a decision earned arrives with the next frame
(`Tick.reward`), so a rollout of T steps is complete one tick after its last step: that tick's values are the values
of the frames after the rollout, and that tick is the first step of the next rollout (`Rollouts.next`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..model.stream_model import State, StreamModel
from ..sources import Source
from .agent import Agent, Decision
from .backends import model_engine
from .predictor import MultiPredictor
from .tick import Sink


@dataclass
class Rollout:
    """T steps of K games, game first: what the update needs to recompute and score every decision."""

    inputs: torch.Tensor  # (K, T, D) features, or (K, T, C, h, w) preprocessed pixels
    first: torch.Tensor  # (K, T) the state was reset before the frame (an episode start; every frame without memory)
    prev: torch.Tensor  # (K, T) the class played on the tick before (-1: none, at a reset), read with model.prev_action
    state0: State  # the recurrent state before the first step
    actions: torch.Tensor  # (K, T) class ids played
    logp: torch.Tensor  # (K, T) their log-probabilities when played
    values: torch.Tensor  # (K, T)
    rewards: torch.Tensor  # (K, T) the game's reward for the step
    dones: torch.Tensor  # (K, T) the episode ended with the step
    last_value: torch.Tensor  # (K,) value of the frame after the last step


@dataclass
class Step:
    """One tick of the K games, as the agent decided it."""

    state: State  # before the tick
    inputs: torch.Tensor
    first: torch.Tensor  # the resets applied
    prev: torch.Tensor  # the classes played on the tick before (-1 where reset)
    episode_start: torch.Tensor  # the frames that start an episode
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor | None = None  # what the previous tick's decisions earned, arriving with these frames


class SamplingAgent(Agent):
    """A model deciding for K games by sampling its probabilities (torch, float32), keeping every tick as a `Step`.

    `value` maps the LSTM's top hidden state to a value per game; `memory=False` (a model trained on single frames)
    resets the state at every frame; `keep_pixels` keeps the preprocessed pixels instead of the features (for an
    update that trains the CNN too). Decides under `torch.no_grad()` itself, so the loop's consumer may train between
    ticks."""

    kind = "sampling"

    def __init__(self, model: StreamModel, value: Callable[[torch.Tensor], torch.Tensor], cfg: Config, streams: int,
                 gen: torch.Generator, memory: bool = True, keep_pixels: bool = False) -> None:
        self.model, self.classes, self.value, self.gen = model, list(model.classes), value, gen
        self.memory, self.keep_pixels = memory, keep_pixels
        self.engine = model_engine(model, replace(cfg.predict, backend="torch", dtype="float32"), streams, "stateful", 16)
        self.steps: list[Step] = []
        self.played = torch.full((streams,), -1, dtype=torch.long)  # the classes sampled on the last tick
        self.source_size: tuple[int, int] | None = None  # (h, w) of the games' frames, once seen

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        return self.decide_batch(image[None], [first], [True])[0]

    def decide_batch(self, images: np.ndarray, first: list[bool], active: list[bool]) -> list[Decision | None]:
        if not all(active):
            raise ValueError("a rollout steps every game on every tick")
        episode_start = torch.tensor(first, dtype=torch.bool)
        resets = episode_start | (not self.memory)
        if self.source_size != images.shape[1:3]:
            self.engine.prepare(*images.shape[1:3])  # the buffers (and a zero state) for this frame size
            self.source_size = images.shape[1:3]
        prev = torch.where(resets, -1, self.played)
        with torch.no_grad():
            state = tuple(s.clone() for s in self.engine.state)
            self.engine.submit(images, resets.numpy(), prev.numpy())
            log_probs = F.log_softmax(self.engine.logits, -1)
            probs = log_probs.exp()
            actions = torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)
            self.steps.append(Step(
                state, (self.engine.x if self.keep_pixels else self.engine.features).clone(), resets, prev, episode_start,
                actions, log_probs.gather(-1, actions[:, None]).squeeze(-1),
                self.value(self.engine.state[0][-1]).squeeze(-1).clone()))
        self.played = actions
        return [Decision(int(a), p) for a, p in zip(actions, probs.numpy())]

    def rewarded(self, rewards: list[float]) -> None:
        """The rewards that arrived with the frames of the last tick (what the tick before earned)."""
        self.steps[-1].rewards = torch.tensor(rewards, dtype=torch.float32)

    def rollout(self, length: int) -> Rollout | None:
        """The first `length` steps kept as a Rollout, once the tick after them has been decided (None before); that
        tick stays as the first step of the next."""
        if len(self.steps) <= length:
            return None
        steps, after = self.steps[:length], self.steps[length]
        self.steps = self.steps[length:]
        outcomes = steps[1:] + [after]  # step t's reward and end arrive with frame t + 1
        stack = lambda name, of=steps: torch.stack([getattr(s, name) for s in of], 1)  # noqa: E731
        return Rollout(stack("inputs"), stack("first"), stack("prev"), steps[0].state, stack("actions"), stack("logp"), stack("values"),
                       stack("rewards", outcomes), stack("episode_start", outcomes), after.values)

    def refresh(self) -> None:
        """The engine takes the model's weights as they are now (after an update)."""
        self.engine.refresh()

    def reset(self) -> None:
        self.engine.reset()
        self.steps = []
        self.played[:] = -1

    def describe(self) -> dict:
        return {"agent": self.kind, "engine": ", ".join(f"{k}: {v}" for k, v in self.engine.path.items())}


class Rollouts:
    """K games played through the decision loop by a SamplingAgent; `next(length)` is the next Rollout.

    `sinks[i]` are game i's sinks (at least one that acts: it presses the sampled class), `threads` torch's threads."""

    def __init__(self, agent: SamplingAgent, games: list[Source], sinks: list[list[Sink]], cfg: Config,
                 threads: int) -> None:
        self.agent, self.games = agent, games
        self.loop = MultiPredictor(agent, games, config=cfg, sinks=sinks, replay="lockstep", threads=threads)
        self.loop.__enter__()
        self._ticks: Iterator = iter(self.loop)

    def next(self, length: int) -> Rollout:
        while (ro := self.agent.rollout(length)) is None:
            ticks = next(self._ticks)
            self.agent.rewarded([t.reward for t in ticks])
        return ro

    def close(self) -> None:
        self._ticks.close()
        self.loop.close()
