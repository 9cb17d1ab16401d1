"""`soak [--frames N] [--json]`: a long synthetic run; RSS, threads, file descriptors and frame accounting.
`soak --source URL --seconds S [--tick-ms MS] [--stamped]`: the same on a live source for S seconds, with reconnects
and (on a stamped stream, tools/rtsp_pattern.py) the age of each frame at decision time, at the start and at the end."""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from ..config import Config
from ..errors import UserError
from ..tools.soak import soak, soak_live


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=100_000, help="frames to run (default 100000)")
    p.add_argument("--replay", choices=["lockstep", "realtime"], default="lockstep",
                   help="lockstep: every frame through the model; realtime: the source flat out, the model skipping frames")
    p.add_argument("--source", help="a live source instead of the synthetic one, e.g. rtsp://127.0.0.1:8554/pattern")
    p.add_argument("--seconds", type=float, default=600.0, help="with --source: how long to run (default 600)")
    p.add_argument("--tick-ms", type=float, default=0.0, help="with --source: make each tick take this long (a slow model)")
    p.add_argument("--stamped", action="store_true",
                   help="with --source: the frames carry the time they were made (tools/rtsp_pattern.py); report their age")
    p.add_argument("--json", action="store_true", help="last stdout line is the result as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.source:
        if not args.seconds > 0 or args.tick_ms < 0:
            raise UserError(f"--seconds must be > 0 and --tick-ms >= 0, got {args.seconds:g} and {args.tick_ms:g}")
        bar = tqdm(total=round(args.seconds), unit="s", leave=False)
        result = soak_live(args.source, args.seconds, cfg, args.tick_ms, args.stamped,
                           progress=lambda t: bar.update(int(t) - bar.n))
        bar.close()
        return report(result, args.json)
    bar = tqdm(total=args.frames, unit="frame", leave=False)

    def progress(seq: int) -> None:
        bar.n = seq
        bar.refresh()

    result = soak(args.frames, replay=args.replay, progress=progress)
    bar.close()
    return report(result, args.json)


def report(result: dict, as_json: bool) -> int:
    """Print the result; exit code 1 unless every frame is accounted for and no thread was left behind."""
    print(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if result["accounted"] and result["threads_after"] == result["threads_before"] else 1
