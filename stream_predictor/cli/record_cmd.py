"""`record --source SRC --out DIR`: record a session. Ctrl-C stops and keeps everything recorded."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..errors import UserError
from ..files import check_writable
from ..learn.record import record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="source spec (default: source.spec)")
    p.add_argument("--out", required=True, help="new session directory")
    p.add_argument("--labeller", help="keyboard, expert, oracle or auto (default: record.labeller)")
    p.add_argument("--policy", help="weights of a model that plays while the expert labels (DAgger)")
    p.add_argument("--frames", type=int, help="stop after this many frames (= record.frames)")
    p.add_argument("--json", action="store_true", help="last stdout line is the summary as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    check_writable(args.out)
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    if args.labeller:
        cfg.record.labeller = args.labeller
    if args.policy:
        cfg.record.policy = args.policy
    if args.frames is not None:
        cfg.record.frames = args.frames
    try:
        summary = record(cfg, args.source or cfg.source.spec, args.out)
    except KeyboardInterrupt:
        print("stopped; every finished segment is kept")
        return 130
    print(json.dumps(summary) if args.json else " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
