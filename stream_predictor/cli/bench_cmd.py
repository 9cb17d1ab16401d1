"""`bench [--json]`: per-tick incremental vs recompute, capture throughput, source rates, end-to-end latency."""

from __future__ import annotations

import argparse
import json
import os

import torch

from .. import bench
from ..config import Config
from ..errors import UserError
from ..model import ENCODERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="last stdout line is all results as JSON")
    p.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated encoders for the per-tick rows")
    p.add_argument("--windows", default="8,16,32", help="window sizes N for the recompute baseline")
    p.add_argument("--repeats", type=int, default=5, help="repeats per figure (the median is reported)")
    p.add_argument("--only", default="per_tick,capture,sources,latency", help="which parts to run (also: parity)")


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace, cfg: Config) -> int:
    encoders = [e for e in args.encoders.split(",") if e]
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise UserError(f"unknown encoder(s) {', '.join(unknown)}; known: {', '.join(ENCODERS)}")
    windows = tuple(int(n) for n in args.windows.split(","))
    parts = set(args.only.split(","))
    torch.set_num_threads(cfg.predict.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict = {"torch_threads": cfg.predict.threads, "cpus": os.cpu_count()}
    if "per_tick" in parts:
        results["per_tick"] = [row for enc in encoders for dev in devices
                               for row in bench.per_tick(bench.default_bench_model(enc), windows, args.repeats, dev)]
        if not args.json:
            print("per tick: incremental step vs recomputing the CNN over the N-frame window\n" + _table(results["per_tick"]))
    if "parity" in parts:
        steps = {"nature_cnn": 1000, "alexnet": 1000, "resnet18": 200, "mobilenet_v3_small": 200, "efficientnet_b0": 200}
        results["parity"] = [bench.parity(enc, steps[enc], 84 if enc == "nature_cnn" else 64) for enc in encoders]
        if not args.json:
            print("\nparity: stepping vs offline forward, fp32, reset half-way\n" + _table(results["parity"]))
    if "capture" in parts:
        results["capture"] = bench.capture_ratio(repeats=args.repeats)
        if not args.json:
            print("\ncapture (lockstep vs plain cv2 loop)\n" + _table([results["capture"]]))
    if "sources" in parts:
        specs = ["ale:Pong"] + (["screen:0,0,800,600"] if os.environ.get("DISPLAY") else [])
        results["sources"] = [bench.source_fps(s) for s in specs]
        if not args.json:
            print("\nsource rates\n" + _table(results["sources"]))
    if "latency" in parts:
        model = bench.default_bench_model("nature_cnn")
        results["latency"] = [bench.latency(model, fps, frames) for fps, frames in ((60, 600), (0, 30000))]
        if not args.json:
            print("\nPredictor capture → decision latency, nature_cnn 84x84 + LSTM 256\n" + _table(results["latency"]))
    if args.json:
        print(json.dumps(results))
    return 0
