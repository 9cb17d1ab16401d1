"""`soak [--frames N] [--json]`: a long synthetic run; RSS, threads, file descriptors and frame accounting."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from ..config import Config
from ..tools.soak import soak


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=100_000, help="frames to run (default 100000)")
    p.add_argument("--replay", choices=["lockstep", "realtime"], default="lockstep",
                   help="lockstep: every frame through the model; realtime: the source flat out, the model skipping frames")
    p.add_argument("--json", action="store_true", help="last stdout line is the result as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    bar = tqdm(total=args.frames, unit="frame", leave=False)

    def progress(seq: int) -> None:
        bar.n = seq
        bar.refresh()

    result = soak(args.frames, replay=args.replay, progress=progress)
    bar.close()
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if result["accounted"] and result["threads_after"] == result["threads_before"] else 1
