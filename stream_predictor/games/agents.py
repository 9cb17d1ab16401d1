"""Game players: the scripted expert as an Agent, and the sink that turns each tick into the game's action."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..config import ExpertConfig
from ..runtime.agent import Agent, Decision
from ..runtime.tick import Sink, Tick
from ..sources.ale import AleGame
from .registry import actions_for, get_game


class ExpertAgent(Agent):
    """The game's scripted expert. It reads the RAM of the game behind the frame, not the pixels.

    Where the game delivers actions late (an `ale:` source with `delay`), it decides for the step its
    action will reach: it looks ahead in the emulator with the actions already on their way (`AleGame.peek`)
    and decides on the RAM there, as if that step were now. That is the label an agent that must act
    ahead of its delay should learn.
    """

    kind = "expert"

    def __init__(self, game: AleGame, params: ExpertConfig | None = None) -> None:
        self.source, self.game = game, get_game(game.name)
        self.params = params or ExpertConfig()
        self.classes = list(self.game.classes)
        self._class_of = {action: name for name, action in self.game.actions.items()}
        self._memory: dict = {}

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        if first:
            self._memory.clear()
        self._memory["last"] = self._class_of.get(self.source.in_flight_action(0))  # what the game just played
        name = self.game.expert(self.source.ram(), self._memory, self.params)
        late = self.source.next_delay
        if late:
            rams = self.source.peek(late)
            ahead: dict = {}
            if len(rams) > 1:  # the expert's memory as it would be one step before the action arrives
                self.game.expert(rams[-2], ahead, self.params)
            ahead["last"] = self._class_of.get(self.source.in_flight_action(len(rams) - 1))
            name = self.game.expert(rams[-1], ahead, self.params)
        if self.params.lookahead:
            name = self._look_ahead(name, late)
        probs = np.zeros(len(self.classes), np.float32)
        probs[self.classes.index(name)] = 1.0
        return Decision(self.classes.index(name), probs)

    def _look_ahead(self, own: str, late: int) -> str:
        """Each class tried in the emulator (after the actions already on their way), the expert playing on until the
        first point: the class that wins soonest, or else loses latest; `own` on a tie."""
        ahead = self.source.actions_ahead(late)
        outcome = {}
        for name in self.classes:
            memory = dict(self._memory)

            def policy(ram: np.ndarray, t: int, name: str = name, memory: dict = memory) -> int:
                if t < late:
                    return ahead[t]
                if t > late:
                    memory["last"] = self.game.expert(ram, memory, self.params)
                    return self.game.actions[memory["last"]]
                memory["last"] = name
                return self.game.actions[name]

            reward, t = self.source.simulate(policy, late + self.params.lookahead)
            outcome[name] = (reward, -t if reward > 0 else t if reward < 0 else 0, name == own)
        return max(self.classes, key=outcome.get)

    def reset(self) -> None:
        self._memory.clear()

    def describe(self) -> dict:
        return {"agent": "expert", "expert": {"game": self.game.name, **asdict(self.params)}}


def action_table(game: AleGame, classes: list[str]) -> list[int]:
    """The game's action for each class, in class order (registry.actions_for)."""
    return actions_for(game.name, classes)


class ActionSink(Sink):
    """Presses the game's action for each tick's class; finished once `episodes` episodes are over (None: never, the
    run ends otherwise)."""

    acts = True

    def __init__(self, game: AleGame, classes: list[str], episodes: int | None = None) -> None:
        self.game, self.episodes = game, episodes
        self.action_of = action_table(game, classes)

    def __call__(self, tick: Tick) -> None:
        if self.episodes is not None and len(self.game.episode_returns) >= self.episodes:
            self.finished = True
            return
        self.game.act(self.action_of[tick.class_id])
