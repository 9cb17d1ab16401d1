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
from ..runtime.threads import torch_threads
from ..tools import bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="last stdout line is all results as JSON")
    p.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated encoders for the per-tick rows")
    p.add_argument("--windows", default="8,16,32", help="window sizes N for the recompute baseline")
    p.add_argument("--repeats", type=int, default=5, help="repeats per figure (the median is reported)")
    p.add_argument("--only", default="per_tick,threads,streams,latency,capture,sources,train",
                   help="which parts to run, comma-separated (also: parity, web, backends, preprocess, precision, replay, triton)")
    p.add_argument("--frames", type=int, default=3000, help="replay: frames in the recorded clip")
    p.add_argument("--weights", default="weights/pong.safetensors", help="backends: the weights to compare on")


def _table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every row's keys, in order of appearance
    widths = [max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(str(r.get(k, "")).ljust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def _per_tick(args, encoders, windows, targets, cfg):
    rows = [row for enc in encoders for dev, dtype in targets
            for row in bench.per_tick(bench.default_bench_model(enc), windows, args.repeats, dev, dtype)]
    return "per tick: incremental step (fast path; the eager module step beside it) vs recomputing the CNN over N frames", rows


def _threads(args, encoders, windows, targets, cfg):
    return "one-frame step, nature_cnn 84x84 + LSTM 256, by torch thread count", \
        bench.threads(bench.default_bench_model("nature_cnn"), args.repeats)


def _streams(args, encoders, windows, targets, cfg):
    rows = bench.streams("nature_cnn", (1, 8, 32), "cpu", "float32", args.repeats)
    rows += bench.streams("nature_cnn", (1, 8, 32), "cpu", "bfloat16", args.repeats)  # native with AVX512-BF16/AMX
    if any(dev == "cuda" for dev, _ in targets):
        for enc in ("nature_cnn", "resnet18"):
            rows += bench.streams(enc, (1, 64), "cuda", "float16", args.repeats)
    return "K streams, one engine call per tick (preprocessing and upload included)", rows


def _parity(args, encoders, windows, targets, cfg):
    steps = {"nature_cnn": 1000, "alexnet": 1000, "resnet18": 200, "mobilenet_v3_small": 200, "efficientnet_b0": 200}
    return "parity: stepping vs offline forward, fp32, reset half-way", \
        [bench.parity(enc, steps[enc], 84 if enc == "nature_cnn" else 64) for enc in encoders]


def _capture(args, encoders, windows, targets, cfg):
    return "capture (lockstep vs plain cv2 loop)", [bench.capture_ratio(repeats=args.repeats)]


def _sources(args, encoders, windows, targets, cfg):
    specs = (["ale:Pong"] if importlib.util.find_spec("ale_py") else []) + (["screen:0,0,800,600"] if os.environ.get("DISPLAY") else [])
    return "source rates", [bench.source_fps(s) for s in specs]


def _latency(args, encoders, windows, targets, cfg):
    model = bench.default_bench_model("nature_cnn")
    return "Predictor capture → decision latency, nature_cnn 84x84 + LSTM 256", \
        [bench.latency(model, fps, frames) for fps, frames in ((60, 600), (0, 30000))]


def _train(args, encoders, windows, targets, cfg):
    with torch_threads(cfg.train.threads or os.cpu_count() or 1):
        rows = [bench.train_fps(device=dev) for dev in sorted({dev for dev, _ in targets})]
    return "training throughput, nature_cnn 84x84 + LSTM 256", rows


def _web(args, encoders, windows, targets, cfg):
    return "the web sink's cost on decision latency, 60 fps synthetic source, nature_cnn 84x84 + LSTM 256", \
        bench.web_cost(bench.default_bench_model("nature_cnn"), repeats=args.repeats)


def _backends(args, encoders, windows, targets, cfg):
    return (f"backends: {args.weights}, 300 real Pong frames, uint8 frame → probabilities, one stream, "
            f"{cfg.predict.threads} thread(s)"), bench.backends(args.weights, repeats=args.repeats)


def _precision(args, encoders, windows, targets, cfg):
    return (f"lower precisions vs float32: {args.weights} plays 1,000 Pong frames in float32; the others see the same "
            "frames"), bench.precision(args.weights)


def _preprocess(args, encoders, windows, targets, cfg):
    return f"preprocessing one 210x160 Pong frame ({args.weights}'s crop, luma, resize, round, normalise), 1 thread", \
        bench.preprocess(args.weights, repeats=args.repeats)


def _replay(args, encoders, windows, targets, cfg):
    rows = bench.replay(args.weights, args.frames, repeats=args.repeats, threads=cfg.predict.threads)
    if "resnet18" in encoders:  # random weights at 224x224: what a torchvision backbone costs per frame
        rows += bench.replay("resnet18", max(100, args.frames // 10), repeats=args.repeats, threads=cfg.predict.threads)
    return (f"recorded Pong in lockstep: decoding alone, predict one frame per tick, predict in chunks; torch, "
            f"{cfg.predict.threads} thread(s) deciding while the capture thread decodes"), rows


def _triton(args, encoders, windows, targets, cfg):
    from ..tools.bench_serving import triton_load

    return (f"streams at 15 fps each, one Triton server (python backend, 1 instance) vs in process (onnxruntime), "
            f"{args.weights}"), triton_load(args.weights, repeats=args.repeats)


PARTS = {"per_tick": _per_tick, "threads": _threads, "streams": _streams, "parity": _parity, "capture": _capture,
         "sources": _sources, "latency": _latency, "train": _train, "web": _web,
         "backends": _backends, "preprocess": _preprocess, "precision": _precision, "replay": _replay,
         "triton": _triton}


def run(args: argparse.Namespace, cfg: Config) -> int:
    encoders = [e for e in args.encoders.split(",") if e]
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise UserError(f"unknown encoder(s) {', '.join(unknown)}; known: {', '.join(ENCODERS)}")
    windows = tuple(int(n) for n in args.windows.split(","))
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        raise UserError(f"unknown bench part(s) {', '.join(sorted(parts - set(PARTS)))}; known: {', '.join(sorted(PARTS))}")
    targets = [("cpu", "float32")] + ([("cuda", "float32"), ("cuda", "float16")] if torch.cuda.is_available() else [])
    results: dict = {**bench.machine(), "torch_threads": cfg.predict.threads}
    if not args.json:
        print(", ".join(f"{k}: {v}" for k, v in results.items()) + "\n")
    for name, part in PARTS.items():
        if name in parts:
            with torch_threads(cfg.predict.threads):
                title, results[name] = part(args, encoders, windows, targets, cfg)
            if not args.json:
                print(f"{title}\n{_table(results[name])}\n", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0
