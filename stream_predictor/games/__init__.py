"""Games: the expert registry, the Pong expert, game players, `play`, and a game in a desktop window."""

from .pong import pong_expert
from .registry import GAMES, Game, get_game, register_game

__all__ = ["GAMES", "Game", "get_game", "pong_expert", "register_game"]
