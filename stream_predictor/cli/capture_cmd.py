"""`capture --source SRC --seconds S [--json]`: read a source through the capture thread and report."""

from __future__ import annotations

import argparse
import json
import time

from ..config import Config
from ..runtime.capture import CaptureThread
from ..sources import open_source


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="source spec (default: source.spec)")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to read")
    p.add_argument("--json", action="store_true", help="last stdout line is a JSON summary")


def run(args: argparse.Namespace, cfg: Config) -> int:
    spec = args.source or cfg.source.spec
    source = open_source(spec, cfg.source)
    frames = skipped = 0
    width = height = 0
    with CaptureThread.configured(source, cfg.source, cfg.source.ring_size, cfg.replay) as cap:
        t0 = time.monotonic()
        for frame in cap.frames(args.seconds):
            frames, skipped = frames + 1, skipped + frame.skipped
            height, width = frame.image.shape[:2]
        elapsed = time.monotonic() - t0
    summary = {"source": spec, "width": width, "height": height, "frames": frames,
               "fps": round(frames / elapsed, 2) if elapsed > 0 else 0.0, "skipped": skipped,
               "reconnects": cap.stats.reconnects, "captured": cap.stats.captured, **source.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{spec}: {width}x{height}, {frames} frames in {elapsed:.2f}s ({summary['fps']} fps), "
              f"{skipped} skipped, {cap.stats.reconnects} reconnects")
    return 0
