"""`bench [--json]`: per-tick incremental vs recompute, capture throughput, source rates, end-to-end latency."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import torch

from ..config import Config
from ..errors import UserError
from ..model import ENCODERS
from ..tools import bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="last stdout line is all results as JSON")
    p.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated encoders for the per-tick rows")
    p.add_argument("--windows", default="8,16,32", help="window sizes N for the recompute baseline")
    p.add_argument("--repeats", type=int, default=5, help="repeats per figure (the median is reported)")
    p.add_argument("--only", default="per_tick,threads,streams,latency,capture,sources,train",
                   help="which parts to run, comma-separated (also: parity)")


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
    known = {"per_tick", "threads", "streams", "latency", "capture", "sources", "train", "parity"}
    if parts - known:
        raise UserError(f"unknown bench part(s) {', '.join(sorted(parts - known))}; known: {', '.join(sorted(known))}")
    torch.set_num_threads(cfg.predict.threads)
    cuda = torch.cuda.is_available()
    targets = [("cpu", "float32")] + ([("cuda", "float32"), ("cuda", "float16")] if cuda else [])
    results: dict = {**bench.machine(), "torch_threads": cfg.predict.threads}
    if not args.json:
        print(", ".join(f"{k}: {v}" for k, v in results.items()) + "\n")

    def show(title: str, rows: list[dict]) -> None:
        if not args.json:
            print(f"{title}\n{_table(rows)}\n", flush=True)

    if "per_tick" in parts:
        results["per_tick"] = [row for enc in encoders for dev, dtype in targets
                               for row in bench.per_tick(bench.default_bench_model(enc), windows, args.repeats, dev, dtype)]
        show("per tick: incremental step (fast path; the eager module step beside it) vs recomputing the CNN over N frames",
             results["per_tick"])
    if "threads" in parts:
        results["threads"] = bench.threads(bench.default_bench_model("nature_cnn"), args.repeats)
        show("one-frame step, nature_cnn 84x84 + LSTM 256, by torch thread count", results["threads"])
    if "streams" in parts:
        rows = bench.streams("nature_cnn", (1, 8), "cpu", "float32", args.repeats)
        if cuda:
            rows += bench.streams("nature_cnn", (1, 64), "cuda", "float16", args.repeats)
            rows += bench.streams("resnet18", (1, 64), "cuda", "float16", args.repeats)
        results["streams"] = rows
        show("K streams, one engine call per tick (preprocessing and upload included)", rows)
    if "parity" in parts:
        steps = {"nature_cnn": 1000, "alexnet": 1000, "resnet18": 200, "mobilenet_v3_small": 200, "efficientnet_b0": 200}
        results["parity"] = [bench.parity(enc, steps[enc], 84 if enc == "nature_cnn" else 64) for enc in encoders]
        show("parity: stepping vs offline forward, fp32, reset half-way", results["parity"])
    if "capture" in parts:
        results["capture"] = bench.capture_ratio(repeats=args.repeats)
        show("capture (lockstep vs plain cv2 loop)", [results["capture"]])
    if "sources" in parts:
        specs = (["ale:Pong"] if importlib.util.find_spec("ale_py") else []) + (["screen:0,0,800,600"] if os.environ.get("DISPLAY") else [])
        results["sources"] = [bench.source_fps(s) for s in specs]
        show("source rates", results["sources"])
    if "latency" in parts:
        model = bench.default_bench_model("nature_cnn")
        results["latency"] = [bench.latency(model, fps, frames) for fps, frames in ((60, 600), (0, 30000))]
        show("Predictor capture → decision latency, nature_cnn 84x84 + LSTM 256", results["latency"])
    if "train" in parts:
        torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
        results["train"] = [bench.train_fps(device=dev) for dev in ["cpu"] + (["cuda"] if cuda else [])]
        torch.set_num_threads(cfg.predict.threads)
        show("training throughput, nature_cnn 84x84 + LSTM 256", results["train"])
    if args.json:
        print(json.dumps(results))
    return 0
