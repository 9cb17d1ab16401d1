"""`host --game Pong [--log steps.jsonl]`: a game in a window, played from the keyboard (a target for screen → keys agents)."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..games.window import host


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--game", default="Pong", help="ALE game name (default: Pong)")
    p.add_argument("--seed", type=int, default=0, help="game seed")
    p.add_argument("--fps", type=float, default=0.0, help="game steps per second (0: native, 15 for frameskip 4)")
    p.add_argument("--title", default="", help="window title (default: 'stream-predictor GAME')")
    p.add_argument("--log", help="one JSON line per game step: keys held, action, paddle position")
    p.add_argument("--steps", type=int, default=0, help="close after this many steps (0: when the window is closed)")
    p.add_argument("--episodes", type=int, default=0, help="close after this many episodes (0: no limit)")
    p.add_argument("--episode-steps", type=int, default=16000, help="steps after which an episode ends (as ale: sources)")
    p.add_argument("--scale", type=int, default=1, help="integer zoom (agents trained on 1:1 frames need 1)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    print(json.dumps(host(args.game, args.seed, args.fps, args.title, args.log, args.steps, args.scale, args.episodes,
                          args.episode_steps)))
    return 0
