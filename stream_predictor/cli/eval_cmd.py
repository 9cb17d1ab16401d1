"""`eval --weights W --data DIR… [--json]`: replay sessions through the Predictor and score the decisions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import Config
from ..learn.evaluate import evaluate
from ..model import load_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a .safetensors weights file")
    p.add_argument("--data", nargs="+", required=True, help="session directories")
    p.add_argument("--png", help="confusion-matrix PNG (default: beside the weights, <name>.eval.png)")
    p.add_argument("--json", action="store_true", help="last stdout line is the result as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    model = load_model(args.weights, cfg.predict.device)
    png = args.png or str(Path(args.weights).with_suffix("")) + ".eval.png"
    result = evaluate(model, args.data, cfg, png)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy={result['accuracy']:.4f} macro_f1={result['macro_f1']:.4f} offline_accuracy={result['offline_accuracy']:.4f} "
              f"agreement={result['stream_offline_agreement']:.4f} frames={result['frames']} mode={result['mode']}")
        print("recall: " + " ".join(f"{c}={r:.3f}" for c, r in result["recall"].items()))
        print(f"confusion matrix: {png}")
    return 0
