"""Games with a scripted expert: a plain registry dict, written out here (Pong), not filled by importing a module.

`register_game(name, classes, actions)(expert)` adds another game (a second game of the same name is refused);
`get_game(name)` finds it or says which games exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import ExpertConfig
from ..errors import UserError
from .pong import PONG_ACTIONS, PONG_CLASSES, pong_expert, pong_state

if TYPE_CHECKING:
    from ..sources.ale import AleGame

# An expert: (the game's RAM, its own memory across steps, parameters) -> a class name.
Expert = Callable[[np.ndarray, dict, ExpertConfig], str]


@dataclass(frozen=True)
class Game:
    name: str  # as in `ale:NAME`
    classes: tuple[str, ...]  # the decisions, in order
    actions: dict[str, int]  # class name -> the game's action
    expert: Expert
    # what the RAM says of the game (e.g. where the ball is), recorded beside the frames as training-only targets
    state: Callable[[np.ndarray], dict[str, float]] | None = None


GAMES: dict[str, Game] = {"Pong": Game("Pong", tuple(PONG_CLASSES), dict(PONG_ACTIONS), pong_expert, pong_state)}


def register_game(name: str, classes: list[str], actions: dict[str, int]) -> Callable[[Expert], Expert]:
    """Decorator: register `expert` as the expert for game `name`."""
    missing = [c for c in classes if c not in actions]
    if missing:
        raise ValueError(f"game {name}: classes {missing} have no action")

    def register(expert: Expert) -> Expert:
        if name in GAMES:
            raise ValueError(f"game {name} is already registered (by {GAMES[name].expert.__module__})")
        GAMES[name] = Game(name, tuple(classes), dict(actions), expert)
        return expert

    return register


def get_game(name: str) -> Game:
    """The game registered as `name` (an `ale:` prefix is allowed)."""
    game = GAMES.get(name.removeprefix("ale:"))
    if game is None:
        raise UserError(f"no expert for {name}; experts exist for: {', '.join(f'ale:{g}' for g in GAMES) or 'none'}")
    return game


def state_reader(game: AleGame) -> Callable[[], dict[str, float]] | None:
    """For a game of a registered game with a `state`: a function giving that state now, from its RAM; else None."""
    known = GAMES.get(game.name.removeprefix("ale:"))
    if known is None or known.state is None:
        return None
    return lambda: known.state(game.ram())


def actions_for(name: str, classes: list[str]) -> list[int]:
    """The game's action for each class, in class order: the one class → action table (the action sink, `tune`, the
    desktop keys). A class the game has no action for is an error."""
    game = get_game(name)
    missing = [c for c in classes if c not in game.actions]
    if missing:
        raise UserError(f"the classes {classes} include {missing}, which {game.name} has no action for; "
                        f"known: {list(game.actions)}")
    return [game.actions[c] for c in classes]
