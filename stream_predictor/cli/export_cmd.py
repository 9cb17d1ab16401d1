"""`export --weights W --format onnx|triton --out PATH [--frame-size WxH]`: the whole tick as one ONNX graph (any
runtime can run the agent), or a Triton model repository that keeps one LSTM state per stream."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..files import check_writable


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a .safetensors weights file (a stateful model)")
    p.add_argument("--format", choices=["onnx", "triton"], default="onnx",
                   help="onnx: one graph file; triton: a model repository (config.pbtxt with sequence batching + the graph)")
    p.add_argument("--out", required=True, help="the .onnx file, or the model repository's directory")
    p.add_argument("--frame-size", help="WxH of the frames the graph takes (default: the source size recorded with the weights)")
    p.add_argument("--name", help="triton: the model's name in the repository (default: the weights file's name)")
    p.add_argument("--max-batch", type=int, default=64, help="triton: the most streams batched into one call (default 64)")
    p.add_argument("--triton-backend", choices=["python", "onnxruntime"], default="python",
                   help="triton: the python backend (model.py runs the graph in onnxruntime; what `serve` runs) or "
                        "Triton's onnxruntime backend (NVIDIA's containers)")
    p.add_argument("--triton-state", choices=["explicit", "implicit"], default="explicit",
                   help="triton: the client keeps each stream's state (explicit, any replica serves any tick) or the "
                        "server does per sequence (implicit: the onnxruntime backend only)")
    p.add_argument("--int8", action="store_true",
                   help="onnx: int8 weights for the fully connected layers (4x fewer bytes per tick; see docs/serving.md)")
    p.add_argument("--json", action="store_true", help="last stdout line is the result as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    check_writable(args.out)
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"export needs onnx and onnxscript ({', '.join(missing)} missing): pip install -e '.[export]'")
    from ..model import load_model
    from ..model.export import export_onnx, frame_size_of
    from ..tools.triton import write_repository

    if not 1 <= args.max_batch <= 65536:
        raise UserError(f"--max-batch must be between 1 and 65536, got {args.max_batch}")
    if args.int8 and args.format != "onnx":
        raise UserError("--int8 is for --format onnx")
    if args.format == "triton" and args.triton_state == "implicit" and args.triton_backend == "python":
        raise UserError("Triton's python backend does not implement implicit state: add --triton-backend onnxruntime "
                        "(NVIDIA's containers), or keep --triton-state explicit")
    model = load_model(args.weights)
    size = frame_size_of(model, args.frame_size)
    t0 = time.monotonic()
    if args.format == "onnx":
        out, diff = export_onnx(model, args.out, size, int8=args.int8)
        files = [out]
    else:
        name = args.name or Path(args.weights).stem
        files, diff = write_repository(model, args.out, name, size, args.max_batch, args.triton_backend,
                                       args.triton_state)
    result = {"format": args.format, "files": [str(f) for f in files], "frame_size": f"{size[1]}x{size[0]}",
              "classes": model.classes, "bytes": sum(f.stat().st_size for f in files),
              "parity_logp": diff, "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
