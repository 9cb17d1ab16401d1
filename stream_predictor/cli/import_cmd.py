"""`import --video X --labels Y.csv --out DIR`: a labelled video of your own → a session."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..learn.record import import_video


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True, help="any video OpenCV reads")
    p.add_argument("--labels", required=True, help="CSV with a 'frame,label' header and one row per frame")
    p.add_argument("--out", required=True, help="new session directory")
    p.add_argument("--classes", help="comma-separated class names in order (default: model.classes)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    classes = args.classes.split(",") if args.classes else cfg.model.classes
    print(json.dumps(import_video(args.video, args.labels, args.out, classes, cfg.record.segment_frames, cfg.record.codec)))
    return 0
