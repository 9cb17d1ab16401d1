"""`train --data DIR… --out W`: behaviour cloning; also `torchrun --nproc_per_node=K run.py train …`."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..files import check_writable
from ..learn.train import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help="session directories (split by session into train/val)")
    p.add_argument("--val", nargs="+", help="validation sessions (instead of holding out train.val_fraction)")
    p.add_argument("--out", required=True, help="weights file to write (.safetensors); metrics/plots go beside it")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this --out")
    p.add_argument("--json", action="store_true", help="last stdout line is the final metrics as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    check_writable(args.out)
    metrics = train(cfg, args.data, args.out, args.val, args.resume)
    if metrics:  # rank 0
        final = metrics["final"]
        summary = {"out": args.out, "accuracy": final["accuracy"], "macro_f1": final["macro_f1"], "steps": metrics["steps"],
                   "frames_per_s": metrics["frames_per_s"], "seconds": metrics["seconds"], "world_size": metrics["world_size"]}
        print(json.dumps(summary) if args.json else " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
