"""`tune --init W --out W2`: PPO fine-tuning in the game from its reward; also `torchrun --nproc_per_node=N run.py tune …`."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..files import check_writable
from ..learn.tune import tune


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", help="the cloned policy to start from (tune.init)")
    p.add_argument("--game", nargs="+", help="game source(s), taken in turn by the games (default: source.spec); "
                   "fault options mix timing faults in, e.g. ale:Pong 'ale:Pong?delay=0-1&repeat=0.05'")
    p.add_argument("--envs", type=int, help="games stepped together (tune.envs)")
    p.add_argument("--frames", type=int, help="frames the agent sees in all, over every process (tune.frames)")
    p.add_argument("--out", required=True, help="weights file to write; checkpoints and snapshots go to OUT.run/, the curve beside it")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this --out")
    p.add_argument("--json", action="store_true", help="last stdout line is the summary as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    check_writable(args.out)
    for key in ("init", "envs", "frames"):
        if getattr(args, key) is not None:
            setattr(cfg.tune, key, getattr(args, key))
    summary = tune(cfg, args.game or [cfg.source.spec], args.out, args.resume)
    if summary:  # rank 0
        print(json.dumps(summary) if args.json else " ".join(f"{k}={v}" for k, v in summary.items() if k != "engine"))
    return 0
