"""`play --source ale:Pong --episodes K --seed S [--json]`: the agent plays through the real threads."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..errors import UserError
from ..games.desktop import play_desktop
from ..games.play import play, play_expert
from ..paths import shipped
from ..runtime.backends import load_decider


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="game source (default: source.spec), e.g. ale:Pong or ale:Pong?flicker=0.5")
    p.add_argument("--weights", help="agent weights (default: play.weights)")
    p.add_argument("--episodes", type=int, help="episodes to play (default: play.episodes)")
    p.add_argument("--seed", type=int, help="seed of the first episode (default: play.seed)")
    p.add_argument("--mode", choices=["fast", "realtime"], help="fast: the game waits for each decision; realtime: native pace")
    p.add_argument("--via", choices=["game", "desktop"], default="game",
                   help="game: the agent drives the game in process; desktop: the game in its own window at its native "
                        "rate, the agent through window capture and key presses (a private Xvfb if there is no display)")
    p.add_argument("--private-display", action="store_true", help="with --via desktop: always start a private Xvfb")
    p.add_argument("--logs", metavar="DIR", help="with --via desktop: keep the game's and the agent's logs here")
    p.add_argument("--record", metavar="DIR", help="record what the agent saw, with its decisions as labels (replay with eval)")
    p.add_argument("--expert", action="store_true", help="let the RAM expert play instead (the reference score)")
    p.add_argument("--sink", action="append", default=[], metavar="SPEC",
                   help="more places for the ticks (repeatable), as for predict: web or web:PORT (a live page), jsonl:PATH, …")
    p.add_argument("--video", metavar="PATH", help="write the annotated game to this video file (default: play.video)")
    p.add_argument("--json", action="store_true", help="last stdout line is the result as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    pc = cfg.play
    if args.via == "desktop" and (args.record or args.expert or args.mode or args.sink or args.video):
        raise UserError("play --via desktop takes none of --record, --expert, --mode, --sink, --video "
                        "(the game in its window sets the pace)")
    if args.episodes is not None and args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    spec, episodes, mode = args.source or cfg.source.spec, args.episodes or pc.episodes, args.mode or pc.mode
    seed = pc.seed if args.seed is None else args.seed
    if args.expert:
        result = play_expert(cfg, spec, episodes, seed, mode)
        print(json.dumps(result) if args.json else f"{result['game']} expert: scores {result['scores']}, mean {_mean(result)}")
        return 0
    weights = shipped(args.weights or pc.weights)  # the shipped weights, wherever it is started from
    if weights.suffix.lower() == ".onnx" and args.via == "desktop":
        raise UserError("play --via desktop takes .safetensors weights")
    model = load_decider(weights, cfg.predict)  # an exported graph runs in onnxruntime
    if args.via == "desktop":
        result = play_desktop(model, cfg, spec, episodes, seed, args.private_display, args.logs)
    else:
        result = play(model, cfg, spec, episodes, seed, mode, cfg.predict.print_every, args.record, args.sink,
                      args.video or pc.video or None)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['game']}: scores {result['scores']}, mean {_mean(result)}, decision latency "
              f"p50 {result['latency_ms_p50']} ms / p99 {result['latency_ms_p99']} ms, {result['skipped']} frames skipped, "
              f"{result['ticks']} ticks ({result['mode']} mode, {result['predict_mode']} model)")
        if "timing" in result:
            print(f"timing: {json.dumps(result['timing'])}")
        if "video" in result:
            print(f"video: {result['video']}")
    return 0


def _mean(result: dict) -> str:
    mean, sem = result["mean_score"], result["sem"]
    return "n/a" if mean is None else f"{mean:+.2f}" + (f" ± {sem:.2f} (standard error)" if sem is not None else "")
